//! A cluster as a newcomer writes it, with no `plugins(...)`: the default plugins
//! (`Respawn`, `Graceful`, `Stall`) keep it safe.
//!
//!     cargo run --example defaults
//!
//! Routes answer with the worker's pid: `GET /`, `GET /exit` (the worker exits 3 at
//! once), `GET /block?ms=N` (blocks the worker's event loop: its heartbeat stops).
//! `PORT` (default 8080). `EXIT_AFTER_MS=N`: every worker but the first generation
//! exits N ms after it starts serving (a crash loop).

use std::time::Duration;

use axum::{Router, extract::Query, routing::get};

#[derive(serde::Deserialize)]
struct Block {
    ms: u64,
}

async fn exit() -> &'static str {
    std::process::exit(3)
}

#[wix_cluster::main(workers = 3)]
async fn main(worker: wix_cluster::Worker) -> std::io::Result<()> {
    let port = std::env::var("PORT").unwrap_or_else(|_| "8080".to_owned());
    let listener = worker.listen(format!("127.0.0.1:{port}")).await?;
    let exit_after = std::env::var("EXIT_AFTER_MS")
        .ok()
        .and_then(|ms| ms.parse().ok())
        .map(Duration::from_millis);
    if let Some(after) = exit_after.filter(|_| worker.generation() > 0) {
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            std::process::exit(3);
        });
    }
    let pid = worker.pid();
    let app = Router::new()
        .route("/", get(move || async move { pid.to_string() }))
        .route("/exit", get(exit))
        .route(
            "/block",
            get(move |Query(block): Query<Block>| async move {
                std::thread::sleep(Duration::from_millis(block.ms));
                pid.to_string()
            }),
        );
    wix_cluster::http::serve(listener, app, &worker).await
}
