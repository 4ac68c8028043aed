//! The management app's router: every built-in page, the user's pages behind them, the
//! mount point in front; and [`Ctx`], what every page reads.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use super::events::Streams;
use super::stats::Stats;
use super::{admin, dashboard, events, health, host, info, metrics, stats, traffic, workers};
use crate::Master;
use crate::config::Config;

/// What every page reads. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Ctx {
    pub(crate) master: Master,
    pub(crate) stats: Arc<Stats>,
    /// Requests per second and latency over time.
    pub(crate) traffic: Arc<super::traffic::Traffic>,
    pub(crate) about: Arc<About>,
    /// The address the server really bound (port 0 resolved), once it has.
    pub(crate) bound: Arc<OnceLock<SocketAddr>>,
    /// The open event streams.
    pub(crate) streams: Arc<Streams>,
}

/// Fixed facts about the program and the app's settings.
pub(crate) struct About {
    /// The executable's file name.
    pub(crate) name: String,
    /// The program's version, when known.
    pub(crate) version: Option<String>,
    /// `""` or `/admin`.
    pub(crate) mount_point: String,
    /// The admin token's SHA-256 digest (what requests are compared with), if one is set.
    pub(crate) admin_token: Option<admin::Digest>,
    /// The names the app answers to besides `localhost` and IP addresses.
    pub(crate) hosts: Arc<host::Hosts>,
}

impl Ctx {
    /// `stopped` turns true when the app stops accepting (an upgrade's handover): its
    /// event streams end then.
    pub(crate) fn new(
        master: Master,
        config: &Config,
        stats: Arc<Stats>,
        stopped: tokio::sync::watch::Receiver<bool>,
    ) -> Ctx {
        let name = std::env::current_exe()
            .ok()
            .and_then(|exe| exe.file_name()?.to_str().map(str::to_owned))
            .or_else(|| std::env::args().next())
            .unwrap_or_default();
        let app = &config.management_app;
        Ctx {
            master,
            stats,
            traffic: Arc::default(),
            about: Arc::new(About {
                name,
                version: config.app_version.clone().filter(|v| !v.is_empty()),
                mount_point: app.mount_point.clone(),
                admin_token: app.admin_token.as_deref().map(admin::digest),
                hosts: Arc::new(host::Hosts::new(&app.hosts)),
            }),
            bound: Arc::new(OnceLock::new()),
            streams: Arc::new(Streams::new(config.timeouts.idle, stopped)),
        }
    }

    /// The management app's address: the bound one once bound, the configured one before.
    pub(crate) fn management_addr(&self) -> SocketAddr {
        self.bound
            .get()
            .copied()
            .unwrap_or_else(|| self.master.management_addr())
    }
}

/// The whole app: built-in pages first, then each user page in the order given (the
/// first router with a matching path answers; the last one's fallback, or a 404,
/// answers the rest), all under the mount point. Under a mount point, the info page
/// answers both `/admin` and `/admin/` (the dashboard asks for the latter). In front of
/// all, the `Host` check (421 for a name the app does not answer to).
pub(crate) fn router(ctx: Ctx, pages: Vec<Router>) -> Router {
    let mount_point = ctx.about.mount_point.clone();
    let hosts = ctx.about.hosts.clone();
    let root = get(info::page).with_state(ctx.clone());
    let builtin = Router::new()
        .route("/", get(info::page))
        .route("/workers", get(workers::page))
        .route("/workers/restart", post(admin::restart))
        .route("/workers/scale", post(admin::scale))
        .route("/master/upgrade", post(admin::upgrade))
        .route("/master/stop", post(admin::stop))
        .route("/health/is_alive", get(health::is_alive))
        .route("/health/ready", get(health::ready))
        .route("/health/deployment/test", get(health::deployment_test))
        .route("/stats", get(stats::page))
        .route("/stats/history", get(stats::history))
        .route("/metrics", get(metrics::page))
        .route("/traffic", get(traffic::page))
        .route("/events", get(events::page))
        .route("/events/stream", get(events::stream))
        .route("/dashboard", get(dashboard::page))
        .with_state(ctx);
    // Chained as fallbacks rather than merged: overlapping routes cannot panic, the
    // earlier router simply wins.
    let app = match pages
        .into_iter()
        .rev()
        .reduce(|later, earlier| earlier.fallback_service(later))
    {
        Some(user) => builtin.fallback_service(user),
        None => builtin.fallback(not_found),
    };
    let app = if mount_point.is_empty() {
        app
    } else {
        // `nest` gives the inner `/` the mount point itself; its `/` with a trailing
        // slash is routed here.
        Router::new()
            .route(&format!("{mount_point}/"), root)
            .nest(&mount_point, app)
            .fallback(not_found)
    };
    app.layer(axum::middleware::from_fn_with_state(hosts, host::check))
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "no such page")
}

/// A JSON error body: `{"error": message}`.
pub(crate) fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        axum::Json(serde_json::json!({ "error": message.into() })),
    )
        .into_response()
}

/// Seconds since the Unix epoch, as a float (Prometheus' and JavaScript's `/ 1000`).
pub(crate) fn unix_seconds(time: std::time::SystemTime) -> f64 {
    time.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// A float as JSON: a number when finite; `"NaN"`, `"+Inf"` or `"-Inf"` (as Prometheus
/// writes them) otherwise, where JSON has no number and `serde_json` would write `null`.
pub(crate) fn number(value: f64) -> serde_json::Value {
    if value.is_finite() {
        serde_json::Value::from(value)
    } else if value.is_nan() {
        serde_json::Value::from("NaN")
    } else if value > 0.0 {
        serde_json::Value::from("+Inf")
    } else {
        serde_json::Value::from("-Inf")
    }
}

#[cfg(test)]
mod tests {
    use super::number;

    #[test]
    fn non_finite_numbers_are_spelled_as_prometheus_does() {
        assert_eq!(number(1.5), serde_json::json!(1.5));
        assert_eq!(number(f64::NAN), "NaN");
        assert_eq!(number(f64::INFINITY), "+Inf");
        assert_eq!(number(f64::NEG_INFINITY), "-Inf");
    }
}
