//! [`ManagementApp`]: what the program configures about the management app (user pages,
//! mount point, admin token, sampling, host names), the checks on it, and what it is once
//! the environment is applied ([`ManagementConfig`]).

use std::fmt;
use std::time::Duration;

/// How often the master samples each worker's CPU time and memory when nothing else is
/// set: often enough for the dashboard's charts to move.
pub(crate) const DEFAULT_SAMPLE_INTERVAL: Duration = Duration::from_secs(2);

/// The management app's settings: user pages mounted beside the built-in ones, a mount
/// point prefixing every page, the admin token that enables `POST` actions, and how
/// often workers are sampled.
///
/// It is the one way to set them, given to
/// [`ClusterBuilder::management_app`](crate::ClusterBuilder::management_app) (the
/// macro's `management_page = f` builds one too); its address is set apart, with
/// [`ClusterBuilder::management`](crate::ClusterBuilder::management), like the other
/// things the master binds.
///
/// ```no_run
/// use axum::{Router, routing::get};
/// use wix_cluster::{Cluster, ManagementApp};
///
/// fn main() -> std::process::ExitCode {
///     let page = Router::new().route("/custom", get(|| async { "custom page" }));
///     Cluster::builder()
///         .management_app(ManagementApp::builder().page(page).mount_point("/admin").build())
///         .run(app)
/// }
///
/// async fn app(worker: wix_cluster::Worker) -> std::io::Result<()> {
/// #   drop(worker);
///     Ok(())
/// }
/// ```
#[derive(Clone, Default)]
pub struct ManagementApp {
    pub(crate) pages: Vec<axum::Router>,
    pub(crate) mount_point: Option<String>,
    pub(crate) admin_token: Option<String>,
    pub(crate) sample_interval: Option<Duration>,
    pub(crate) hosts: Vec<String>,
}

impl ManagementApp {
    /// A builder with the defaults: no user page, no mount point, no admin token (the
    /// `POST` actions answer 403), workers sampled every 2 s.
    pub fn builder() -> ManagementAppBuilder {
        ManagementAppBuilder {
            app: ManagementApp::default(),
        }
    }
}

impl fmt::Debug for ManagementApp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManagementApp")
            .field("pages", &self.pages.len())
            .field("mount_point", &self.mount_point)
            // Never in logs.
            .field("admin_token", &self.admin_token.as_ref().map(|_| "<set>"))
            .field("sample_interval", &self.sample_interval)
            .field("hosts", &self.hosts)
            .finish()
    }
}

/// Builds a [`ManagementApp`].
#[derive(Debug)]
pub struct ManagementAppBuilder {
    app: ManagementApp,
}

impl ManagementAppBuilder {
    /// Mounts `router`'s routes beside the built-in pages (and under the mount point, if
    /// any). Built-in pages win: a user route with a built-in page's path and method is
    /// never reached. May be called several times; routers given later must not repeat
    /// the routes of earlier ones (such a router is left out, with an error in the log).
    pub fn page(mut self, router: axum::Router) -> Self {
        self.app.pages.push(router);
        self
    }

    /// A path prefixing every page, such as `/admin`.
    /// Default: none. `WIX_CLUSTER_MOUNT_POINT` overrides it; it must start with `/`,
    /// and `/` alone means none.
    pub fn mount_point(mut self, path: impl Into<String>) -> Self {
        self.app.mount_point = Some(path.into());
        self
    }

    /// The bearer token that `POST /workers/restart` and `POST /workers/scale` require.
    /// Default: none, and those actions answer 403. `WIX_CLUSTER_ADMIN_TOKEN` overrides
    /// it. Blanks around it are not part of it (nor around the token a request
    /// presents); an empty token means none.
    pub fn admin_token(mut self, token: impl Into<String>) -> Self {
        self.app.admin_token = Some(token.into());
        self
    }

    /// How often the master reads each worker's CPU time and resident memory from
    /// `/proc` (CPU % is the change between two readings). Default 2 s; at least 100 ms.
    pub fn sample_interval(mut self, interval: Duration) -> Self {
        self.app.sample_interval = Some(interval);
        self
    }

    /// A host name the management app answers to (its `Host` header, the port aside,
    /// in any case), besides `localhost` and IP addresses, such as the name a reverse
    /// proxy or Prometheus uses to reach it; `"*"` answers every name. May be called
    /// several times. Other names get 421 Misdirected Request, so that a web page
    /// whose name resolves to this machine (DNS rebinding) cannot read the pages.
    /// `WIX_CLUSTER_MANAGEMENT_HOSTS` (names separated by commas) overrides them.
    pub fn host(mut self, name: impl Into<String>) -> Self {
        self.app.hosts.push(name.into());
        self
    }

    /// The settings.
    pub fn build(self) -> ManagementApp {
        self.app
    }
}

/// Checks a mount point and puts it in the form the router uses: `""` for none,
/// otherwise `/a/b` with no trailing `/`.
pub(crate) fn normalize_mount_point(raw: &str) -> Result<String, &'static str> {
    const EXPECTED: &str = "a path such as /admin: starting with `/`, made of letters, digits \
                            and `-._~/`";
    let path = raw.trim();
    if path.is_empty() || path == "/" {
        return Ok(String::new());
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || "-._~/".contains(c);
    if !path.starts_with('/') || !path.chars().all(allowed) || path.contains("//") {
        return Err(EXPECTED);
    }
    Ok(path.trim_end_matches('/').to_owned())
}

/// The admin token as compared: without the blanks around it; `None` when empty.
pub(crate) fn normalize_admin_token(raw: &str) -> Option<String> {
    Some(raw.trim())
        .filter(|token| !token.is_empty())
        .map(str::to_owned)
}

/// Checks a host name the management app answers to: letters, digits, `-` and `.`,
/// or `*`; returned lowercase.
pub(crate) fn check_host(raw: &str) -> Result<String, &'static str> {
    const EXPECTED: &str = "host names such as admin.example.com (letters, digits, `-` and \
                            `.`, no port), or `*` for any, separated by commas";
    let name = raw.trim();
    let allowed = |c: char| c.is_ascii_alphanumeric() || "-.".contains(c);
    if name == "*" || (!name.is_empty() && name.chars().all(allowed)) {
        Ok(name.to_ascii_lowercase())
    } else {
        Err(EXPECTED)
    }
}

/// Checks a list of host names separated by commas (blanks ignored, empty for none).
pub(crate) fn check_hosts(raw: &str) -> Result<Vec<String>, &'static str> {
    raw.split(',')
        .filter(|name| !name.trim().is_empty())
        .map(check_host)
        .collect()
}

/// Checks a sampling interval.
pub(crate) fn check_sample_interval(interval: Duration) -> Result<Duration, &'static str> {
    if interval < Duration::from_millis(100) {
        return Err("at least 100 ms");
    }
    Ok(interval)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_points_are_normalized_or_refused() {
        assert_eq!(normalize_mount_point("").unwrap(), "");
        assert_eq!(normalize_mount_point("/").unwrap(), "");
        assert_eq!(normalize_mount_point("/admin").unwrap(), "/admin");
        assert_eq!(normalize_mount_point(" /admin/ ").unwrap(), "/admin");
        assert_eq!(normalize_mount_point("/a/b-c").unwrap(), "/a/b-c");
        for bad in ["admin", "/a b", "/{id}", "/*rest", "/a//b", "/a?x=1"] {
            assert!(normalize_mount_point(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tokens_are_trimmed_and_host_names_checked() {
        assert_eq!(normalize_admin_token("  t0k\n").as_deref(), Some("t0k"));
        assert_eq!(normalize_admin_token(" \t"), None);
        assert_eq!(
            check_hosts(" Admin.Example , ops-1.internal,").unwrap(),
            ["admin.example", "ops-1.internal"]
        );
        assert_eq!(check_hosts("").unwrap(), Vec::<String>::new());
        assert_eq!(check_hosts("*").unwrap(), ["*"]);
        for bad in ["admin.example:8084", "a b", "*.example", "http://x"] {
            assert!(check_hosts(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_token_never_shows_in_debug_output() {
        let app = ManagementApp::builder().admin_token("s3cret").build();
        assert!(!format!("{app:?}").contains("s3cret"));
    }
}

/// The management app's settings once the environment is applied.
#[derive(Clone)]
pub(crate) struct ManagementConfig {
    /// User routers, mounted beside the built-in pages.
    pub(crate) pages: Vec<axum::Router>,
    /// `""` or a path such as `/admin`, without a trailing `/`.
    pub(crate) mount_point: String,
    /// The bearer token for the `POST` actions; `None` disables them.
    pub(crate) admin_token: Option<String>,
    /// How often workers are sampled.
    pub(crate) sample_interval: Duration,
    /// Host names answered besides `localhost` and IP addresses (lowercase; `*`: any).
    pub(crate) hosts: Vec<String>,
}

impl fmt::Debug for ManagementConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManagementConfig")
            .field("pages", &self.pages.len())
            .field("mount_point", &self.mount_point)
            .field("admin_token", &self.admin_token.as_ref().map(|_| "<set>"))
            .field("sample_interval", &self.sample_interval)
            .field("hosts", &self.hosts)
            .finish()
    }
}
