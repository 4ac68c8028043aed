//! A test fixture: a cluster whose histogram buckets are read from a file at start, by
//! each process (`BUCKETS_FILE`, comma-separated bounds), so that a rolling restart
//! after the file changed runs workers with another bucket layout, as a new build with
//! other `histogram_buckets` would. `/observe?v=X` records X in the histogram
//! `layout_latency_seconds` and answers with the worker's pid.

use std::process::ExitCode;

use axum::{Router, extract::Query, routing::get};
use wix_cluster::plugins::{Graceful, Respawn};
use wix_cluster::{Cluster, Worker};

fn buckets() -> Vec<f64> {
    std::env::var("BUCKETS_FILE")
        .ok()
        .and_then(|path| std::fs::read_to_string(path).ok())
        .map(|text| {
            text.trim()
                .split(',')
                .filter_map(|bound| bound.trim().parse().ok())
                .collect()
        })
        .unwrap_or_else(|| wix_cluster::metrics::DEFAULT_BUCKETS.to_vec())
}

fn main() -> ExitCode {
    Cluster::builder()
        .workers(2)
        .histogram_buckets(&buckets())
        .plugin(Respawn::default())
        .plugin(Graceful::default())
        .run(app)
}

#[derive(serde::Deserialize)]
struct Observe {
    v: f64,
}

async fn app(worker: Worker) -> std::io::Result<()> {
    let port = std::env::var("PORT").unwrap_or_else(|_| "8080".to_owned());
    let listener = worker.listen(format!("127.0.0.1:{port}")).await?;
    let pid = worker.pid();
    let app = Router::new().route(
        "/observe",
        get(move |Query(q): Query<Observe>| async move {
            metrics::histogram!("layout_latency_seconds").record(q.v);
            pid.to_string()
        }),
    );
    wix_cluster::http::serve(listener, app, &worker).await
}
