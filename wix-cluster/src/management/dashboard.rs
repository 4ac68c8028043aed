//! `GET /dashboard`: an HTML page for a person. It polls `/`, `/workers`, `/stats`,
//! `/stats/history` and `/traffic` every second (no reload), draws CPU, memory,
//! requests per second and latency (p50, p99) over the last minutes as small SVG charts,
//! per worker and for the cluster, lists the metrics recorded through the `metrics`
//! facade, shows the event log as a timeline (from `/events`, then live from
//! `/events/stream`), and offers rolling restart and scale buttons when an
//! admin token is configured. Self-contained: no script or style from elsewhere.

use axum::extract::State;
use axum::response::Html;

use super::routes::Ctx;

/// The page; `__MOUNT_POINT__` is replaced by the mount point as a JSON string.
const PAGE: &str = include_str!("dashboard.html");

/// `GET /dashboard`.
pub(crate) async fn page(State(ctx): State<Ctx>) -> Html<String> {
    // The mount point is checked to be plain path characters; JSON-encoding it keeps the
    // script valid whatever it holds.
    let base = serde_json::to_string(&ctx.about.mount_point).unwrap_or_else(|_| "\"\"".into());
    Html(PAGE.replace("\"__MOUNT_POINT__\"", &base))
}
