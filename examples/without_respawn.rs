//! The default plugins, one turned off: with `without(Respawn)` a worker that dies stays
//! dead (and when none is left the master exits 1).
//!
//!     cargo run --example without_respawn
//!
//! `GET /` answers with the worker's pid. `PORT` (default 8080).

use axum::{Router, routing::get};

#[wix_cluster::main(workers = 3, without(Respawn))]
async fn main(worker: wix_cluster::Worker) -> std::io::Result<()> {
    let port = std::env::var("PORT").unwrap_or_else(|_| "8080".to_owned());
    let listener = worker.listen(format!("127.0.0.1:{port}")).await?;
    let pid = worker.pid().to_string();
    let app = Router::new().route("/", get(move || async move { pid }));
    wix_cluster::http::serve(listener, app, &worker).await
}
