//! The management app: the built-in one on the master, plus a page of the program's
//! own (`/custom`) mounted beside the built-in ones.
//!
//!     cargo run --example management_page
//!     # then: open http://127.0.0.1:8084/dashboard
//!     #       curl 127.0.0.1:8084/custom
//!     #       curl 127.0.0.1:8084/workers
//!
//! The app (port `PORT`, default 8080) answers `/` with the worker's pid and
//! `/health/is_alive` with 200, which is what `GET /health/deployment/test` on the
//! management app calls. Each worker reports two custom metrics, which the management
//! app shows in `/stats` and `/metrics`: the counter `hits` (one per `GET /`) and the
//! gauge `app_ready` (1 once it listens). `WIX_CLUSTER_MANAGEMENT_ADDR`, `WIX_CLUSTER_MOUNT_POINT` and
//! `WIX_CLUSTER_ADMIN_TOKEN` configure the management app.

use axum::{Json, Router, routing::get};

/// The program's own management page, served by the master next to `/workers`,
/// `/metrics`, `/dashboard`...
fn admin_pages() -> Router {
    Router::new().route(
        "/custom",
        get(|| async {
            Json(serde_json::json!({
                "page": "custom",
                "message": "Hi from a custom management page",
                "served_by_pid": std::process::id(),
            }))
        }),
    )
}

#[wix_cluster::main(
    workers = 2,
    plugins(Respawn, Graceful),
    management_page = admin_pages
)]
async fn main(worker: wix_cluster::Worker) -> std::io::Result<()> {
    let port = std::env::var("PORT").unwrap_or_else(|_| "8080".to_owned());
    let listener = worker.listen(format!("127.0.0.1:{port}")).await?;
    wix_cluster::metrics::gauge("app_ready", 1.0);
    let pid = worker.pid().to_string();
    let app = Router::new()
        .route(
            "/",
            get(move || async move {
                wix_cluster::metrics::counter("hits", 1);
                pid
            }),
        )
        .route("/health/is_alive", get(|| async { "Alive" }));
    wix_cluster::http::serve(listener, app, &worker).await
}
