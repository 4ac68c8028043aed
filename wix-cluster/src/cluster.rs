//! [`Cluster`]: the builder behind `#[wix_cluster::main]`, and role dispatch.

use std::future::Future;
use std::process::ExitCode;

use crate::app::AppResult;
use std::any::TypeId;

use crate::config::{Config, Flavor, Requested, SingleProcess, WorkerCount};
use crate::plugin::{Plugin, Plugins};
use crate::plugins::DefaultPlugin;
use crate::role::Role;
use crate::{ManagementApp, Worker};

/// A cluster: a master process plus `workers` worker processes that run the app.
///
/// ```no_run
/// use wix_cluster::{Cluster, Worker, plugins::{Graceful, Respawn}};
///
/// fn main() -> std::process::ExitCode {
///     Cluster::builder()
///         .workers(4)
///         .plugin(Respawn::default())
///         .plugin(Graceful::default())
///         .run(app)
/// }
///
/// async fn app(worker: Worker) -> std::io::Result<()> {
///     let listener = worker.listen("127.0.0.1:8080").await?;
///     # drop(listener);
///     Ok(())
/// }
/// ```
#[derive(Debug)]
pub struct Cluster;

impl Cluster {
    /// A builder with the defaults: 2 workers; the default plugins ([`Respawn`],
    /// [`Graceful`], [`Stall`], see [`DefaultPlugin`]) with their defaults; single
    /// process only when `WIX_CLUSTER_SINGLE=1` or a debugger is attached; one-thread
    /// workers.
    ///
    /// [`Respawn`]: crate::plugins::Respawn
    /// [`Graceful`]: crate::plugins::Graceful
    /// [`Stall`]: crate::plugins::Stall
    pub fn builder() -> ClusterBuilder {
        ClusterBuilder::default()
    }
}

/// Configures and runs a [`Cluster`].
#[derive(Default)]
pub struct ClusterBuilder {
    requested: Requested,
    plugins: Plugins,
    /// The types of the plugins added, to leave out the defaults they configure.
    named: Vec<TypeId>,
    without: Vec<DefaultPlugin>,
}

impl ClusterBuilder {
    /// How many worker processes to run. Default 2; `WIX_CLUSTER_WORKERS` overrides it.
    pub fn workers(mut self, workers: usize) -> Self {
        self.requested.workers = WorkerCount::Fixed(workers);
        self
    }

    /// As many workers as CPUs this process may use
    /// ([`std::thread::available_parallelism`]: its CPU affinity and cgroup CPU quota,
    /// as in a container with a CPU limit). `WIX_CLUSTER_WORKERS=auto` does the same.
    pub fn workers_auto(mut self) -> Self {
        self.requested.workers = WorkerCount::Auto;
        self
    }

    /// Adds a plugin; hooks run in the order plugins were added, after the default
    /// plugins' ([`DefaultPlugin`]). Adding a default plugin's type (such as
    /// `Respawn::default().max_deaths(5)`) configures it: that one runs in its place.
    pub fn plugin<P: Plugin>(mut self, plugin: P) -> Self {
        self.named.push(TypeId::of::<P>());
        self.plugins.push(Box::new(plugin));
        self
    }

    /// Turns a default plugin off: `.without(DefaultPlugin::Respawn)` leaves dead
    /// workers dead (when none is left the master exits 1). May be called for each.
    pub fn without(mut self, plugin: DefaultPlugin) -> Self {
        if !self.without.contains(&plugin) {
            self.without.push(plugin);
        }
        self
    }

    /// When to run as one process. Default [`SingleProcess::Auto`]; `WIX_CLUSTER_SINGLE`
    /// (`1` or `0`) overrides it.
    pub fn single_process(mut self, policy: SingleProcess) -> Self {
        self.requested.single_process = policy;
        self
    }

    /// The runtime each worker runs its app on. Default [`Flavor::CurrentThread`].
    pub fn flavor(mut self, flavor: Flavor) -> Self {
        self.requested.flavor = flavor;
        self
    }

    /// Threads of each worker's runtime with [`Flavor::MultiThread`]. Default: tokio's
    /// (one per core).
    pub fn worker_threads(mut self, threads: usize) -> Self {
        self.requested.worker_threads = Some(threads);
        self
    }

    /// The management app's address. Default `127.0.0.1:8084`;
    /// `WIX_CLUSTER_MANAGEMENT_ADDR` overrides it; port 0 picks a free port (the master
    /// logs `management app listening on <addr>`). A bad address is an error at
    /// start-up (exit code 2); an address that cannot be bound is logged and the
    /// cluster runs without its management app.
    pub fn management(mut self, addr: impl Into<String>) -> Self {
        self.requested.management = Some(addr.into());
        self
    }

    /// The management app's pages, mount point, admin token and sampling: the one place
    /// they are set, built with [`ManagementApp::builder`] (its methods give each
    /// default). Default: no user page, no mount point, no admin token, workers sampled
    /// every 2 s. Where the app listens is [`ClusterBuilder::management`].
    ///
    /// ```no_run
    /// use axum::{Router, routing::get};
    /// use wix_cluster::{Cluster, ManagementApp};
    ///
    /// fn main() -> std::process::ExitCode {
    ///     let page = Router::new().route("/custom", get(|| async { "custom page" }));
    ///     Cluster::builder()
    ///         .management("127.0.0.1:8084")
    ///         .management_app(
    ///             ManagementApp::builder()
    ///                 .page(page)
    ///                 .mount_point("/admin")
    ///                 .admin_token("s3cret")
    ///                 .build(),
    ///         )
    ///         .run(app)
    /// }
    ///
    /// async fn app(worker: wix_cluster::Worker) -> std::io::Result<()> {
    /// #   drop(worker);
    ///     Ok(())
    /// }
    /// ```
    pub fn management_app(mut self, app: ManagementApp) -> Self {
        self.requested.management_app = app;
        self
    }

    /// How long a connection to the app ([`crate::http::serve`]) or to the management
    /// app may take to send a whole request head (from its accept, or from the head's
    /// first byte on a kept-alive connection) before it is closed. Default 30 s;
    /// `WIX_CLUSTER_HEADER_READ_TIMEOUT` overrides it. Must be more than 0 (any longer
    /// duration is fine).
    pub fn header_read_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.requested.header_read_timeout = Some(timeout);
        self
    }

    /// How long such a connection may stay open with no request in flight and no byte
    /// read or written before it is closed. Default 75 s; `WIX_CLUSTER_IDLE_TIMEOUT`
    /// overrides it. Must be more than 0.
    pub fn idle_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.requested.idle_timeout = Some(timeout);
        self
    }

    /// How long the app may wait for the next byte of a request body on such a
    /// connection, counted from when it began to wait (nginx's `client_body_timeout`).
    /// When it passes, the request is answered `408 Request Timeout` if the app has not
    /// answered yet (the app's reading of the body fails, and its handler is dropped),
    /// and the connection closes if it has. Default 60 s; `WIX_CLUSTER_BODY_READ_TIMEOUT`
    /// overrides it. Must be more than 0.
    pub fn body_read_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.requested.body_read_timeout = Some(timeout);
        self
    }

    /// The largest request head a connection to the app or to the management app may
    /// send, in bytes: HTTP/1's request line and headers, HTTP/2's header list (as
    /// HPACK counts it). A larger one is answered `431 Request Header Fields Too Large`.
    /// Default 64 KiB; `WIX_CLUSTER_MAX_HEADER_BYTES` overrides it. From 8 KiB to
    /// 16 MiB (otherwise an error at start, exit code 2). A connection holds at most
    /// about this much while its head arrives.
    pub fn max_header_bytes(mut self, bytes: usize) -> Self {
        self.requested.max_header_bytes = Some(bytes);
        self
    }

    /// Whether [`crate::http::serve`] records request metrics
    /// (`http_server_request_duration_seconds`, `http_server_active_requests`,
    /// `http_server_open_connections`). Default on; `WIX_CLUSTER_REQUEST_METRICS` (`1` or
    /// `0`) overrides.
    pub fn request_metrics(mut self, on: bool) -> Self {
        self.requested.metrics.requests = on;
        self
    }

    /// The bucket bounds of every histogram recorded through the `metrics` facade, in
    /// increasing order (default [`crate::metrics::DEFAULT_BUCKETS`], for latencies in
    /// seconds). More than [`crate::metrics::MAX_BUCKETS`] bounds, or bounds that are
    /// not finite or not increasing, are an error at start (exit code 2).
    pub fn histogram_buckets(mut self, bounds: &[f64]) -> Self {
        self.requested.metrics.buckets = bounds.to_vec();
        self
    }

    /// Watch mode, for development: the master watches its program file and, when a
    /// build replaces it, upgrades the cluster to the new build without closing the
    /// port (as SIGUSR2 does). Default off; `WIX_CLUSTER_WATCH` (`1` or `0`) overrides.
    pub fn watch(mut self, watch: bool) -> Self {
        self.requested.watch = watch;
        self
    }

    /// The program's version, shown by the management app (`GET /`). The
    /// `#[wix_cluster::main]` macro passes the crate's `CARGO_PKG_VERSION`. Default: none.
    pub fn app_version(mut self, version: impl Into<String>) -> Self {
        self.requested.app_version = Some(version.into());
        self
    }

    /// Runs the cluster and returns the process's exit code; call it from `main`.
    ///
    /// Decides this process's part before any runtime starts: a worker (started by a
    /// master) runs `app`; otherwise the process is the master, or runs `app` alone in
    /// single-process mode. A bad setting (such as `WIX_CLUSTER_WORKERS=abc`) is one
    /// error line and exit code 2, before anything is spawned.
    pub fn run<F, Fut>(self, app: F) -> ExitCode
    where
        F: FnOnce(Worker) -> Fut,
        Fut: Future,
        Fut::Output: AppResult,
    {
        let role = crate::role::detect();
        let identity = crate::logging::Identity {
            worker: match &role {
                Ok(Role::Worker(marker)) => Some((marker.id, marker.generation)),
                _ => None,
            },
            pid: std::process::id(),
        };
        if let Err(format) = crate::logging::init(identity) {
            tracing::error!(
                "invalid {}={format:?}: expected text or json",
                crate::logging::ENV_LOG_FORMAT
            );
            return ExitCode::from(2);
        }
        let role = match role {
            Ok(role) => role,
            Err(e) => {
                tracing::error!("{e}");
                return ExitCode::from(2);
            }
        };
        let config = match Config::resolve(
            &self.requested,
            |name| std::env::var(name).ok(),
            crate::procfs::debugger_attached,
        ) {
            Ok(config) => config,
            Err(e) => {
                tracing::error!("{e}");
                return ExitCode::from(2);
            }
        };
        let autoscale_env = matches!(
            config.autoscale,
            Some(crate::config::AutoscaleEnv::Bounds { .. })
        );
        let plugins = self.plugins_with_defaults(autoscale_env);
        if config.single_process {
            // The token is the management app's, read above; nothing systemd-related
            // runs in single-process mode. The app, and what it starts, never see them.
            // SAFETY: still before any runtime or thread of ours exists.
            unsafe {
                std::env::remove_var(crate::config::ENV_ADMIN_TOKEN);
                std::env::remove_var("NOTIFY_SOCKET");
            }
        }
        match role {
            Role::Worker(marker) => crate::worker::process::run(marker, &config, plugins, app),
            Role::TopLevel if config.single_process => crate::single::run(&config, plugins, app),
            Role::TopLevel => crate::master::run(&config, plugins),
        }
    }

    /// The default plugins neither named nor turned off, then the program's own, then
    /// `Autoscale` when `WIX_CLUSTER_AUTOSCALE` sets bounds and the program does not
    /// name it.
    fn plugins_with_defaults(self, autoscale_env: bool) -> Plugins {
        let autoscale = autoscale_env
            && !self
                .named
                .contains(&std::any::TypeId::of::<crate::plugins::Autoscale>());
        let mut plugins: Plugins = DefaultPlugin::ALL
            .into_iter()
            .filter(|default| {
                !self.without.contains(default) && !self.named.contains(&default.type_id())
            })
            .map(DefaultPlugin::instance)
            .collect();
        plugins.extend(self.plugins);
        if autoscale {
            plugins.push(Box::new(crate::plugins::Autoscale::default()));
        }
        plugins
    }
}

impl std::fmt::Debug for ClusterBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterBuilder")
            .field("requested", &self.requested)
            .field("without", &self.without)
            .field(
                "plugins",
                &self.plugins.iter().map(|p| p.name()).collect::<Vec<_>>(),
            )
            .finish()
    }
}
