//! The `Host` check in front of every page: the management app answers only requests
//! addressed to it by a name it knows, so that a web page whose name an attacker points
//! at 127.0.0.1 (DNS rebinding) cannot read `/events`, with its panic messages, or any
//! other page from a browser on the machine.
//!
//! Answered: `localhost`, any IP address (`127.0.0.1`, `[::1]`, the address the app is
//! bound to, a pod's address: a rebinding page always has a name of its own, never an
//! address), and the names configured ([`crate::ManagementAppBuilder::host`],
//! `WIX_CLUSTER_MANAGEMENT_HOSTS`); `*` among those turns the check off. Names compare
//! without case, a trailing dot or the port. A request with no `Host` (HTTP/1.0; no
//! browser sends one without it) is answered. Anything else gets 421 Misdirected
//! Request.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;

use super::routes::error;

/// The names the management app answers to besides `localhost` and IP addresses.
#[derive(Debug, Clone, Default)]
pub(crate) struct Hosts {
    /// Lowercase, without a trailing dot.
    names: Vec<String>,
    /// `*` was configured: every host is answered.
    any: bool,
}

impl Hosts {
    /// From the configured names, checked already (see [`crate::config::management::check_host`]).
    pub(crate) fn new(names: &[String]) -> Hosts {
        Hosts {
            any: names.iter().any(|name| name == "*"),
            names: names
                .iter()
                .map(|name| name.trim_end_matches('.').to_ascii_lowercase())
                .collect(),
        }
    }

    /// Whether a request with this `Host` (or URI authority) is answered.
    fn allows(&self, authority: &str) -> bool {
        if self.any {
            return true;
        }
        let Ok(authority) = authority.parse::<axum::http::uri::Authority>() else {
            return false;
        };
        let host = authority.host();
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if bare.parse::<IpAddr>().is_ok() {
            return true;
        }
        let name = host.trim_end_matches('.');
        name.eq_ignore_ascii_case("localhost")
            || self
                .names
                .iter()
                .any(|known| known.eq_ignore_ascii_case(name))
    }
}

/// The middleware: 421 for a request addressed to a name the app does not answer to.
pub(crate) async fn check(
    State(hosts): State<Arc<Hosts>>,
    request: Request,
    next: Next,
) -> Response {
    let header = request
        .headers()
        .get(header::HOST)
        .map(|value| value.to_str().unwrap_or("\u{0}"));
    // HTTP/2's `:authority` and an absolute-form target land in the URI.
    let target = request.uri().authority().map(|a| a.as_str());
    let refused = [header, target]
        .into_iter()
        .flatten()
        .find(|authority| !hosts.allows(authority));
    if let Some(refused) = refused {
        let refused = refused.escape_debug().to_string();
        tracing::debug!("management app: refused a request for host {refused}");
        return error(
            StatusCode::MISDIRECTED_REQUEST,
            format!(
                "this management app does not answer to the host {refused}: add the name to \
                 WIX_CLUSTER_MANAGEMENT_HOSTS (or ManagementAppBuilder::host), or use \
                 localhost or an IP address"
            ),
        );
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::Hosts;

    #[test]
    fn loopback_addresses_and_configured_names_are_answered() {
        let hosts = Hosts::new(&["admin.internal".to_owned()]);
        for host in [
            "localhost",
            "LOCALHOST:8084",
            "localhost.",
            "127.0.0.1",
            "127.0.0.1:8084",
            "[::1]:8084",
            "[::1]",
            "10.1.2.3:8084",
            "admin.internal",
            "Admin.Internal.:9000",
        ] {
            assert!(hosts.allows(host), "{host}");
        }
        for host in [
            "evil.example",
            "localhost.evil.example:8084",
            "admin.internal.evil",
            "",
            "not a host",
            "127.0.0.1.nip.io",
        ] {
            assert!(!hosts.allows(host), "{host}");
        }
        assert!(Hosts::new(&["*".to_owned()]).allows("evil.example"));
    }
}
