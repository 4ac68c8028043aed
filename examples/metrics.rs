//! Cluster-wide metrics through the `metrics` facade: the app and a library it uses
//! (`wix-cluster-test-support`, which knows nothing of wix-cluster) record counters,
//! gauges and histograms with labels; the master's `/metrics` shows them for the whole
//! cluster, next to the request metrics of `wix_cluster::http::serve`.
//!
//!     cargo run --example metrics
//!     # then: curl '127.0.0.1:8080/job?kind=resize'; curl 127.0.0.1:8084/metrics
//!
//! `PORT` (default 8080) is the app's port. Routes: `/` answers `ok`; `/status/<code>`
//! answers with that status; `/job?kind=K` runs the library's job of kind K and counts
//! `app_jobs_requested_total{kind}` (the answer names the worker in `x-worker-pid`); `/flood?series=N&increments=M` records N distinct
//! counter series (`flood_<i>_total`) and M increments of one (for the bounds tests);
//! `/gauge/<name>/<value>` sets the gauge `<name>` of the worker that answers to
//! `<value>`, which may be `NaN`, `inf` or `-inf` (for the dashboard's tests).
//! Each worker sets the gauge `app_worker_generation` to its generation.

use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::{Router, routing::get};
use serde::Deserialize;

#[derive(Deserialize)]
struct Job {
    kind: String,
}

#[derive(Deserialize)]
struct Flood {
    series: usize,
    increments: u64,
}

#[wix_cluster::main(workers = 2)]
async fn main(worker: wix_cluster::Worker) -> std::io::Result<()> {
    let port = std::env::var("PORT").unwrap_or_else(|_| "8080".to_owned());
    metrics::describe_counter!(
        "app_jobs_requested_total",
        "Jobs asked of the app, by kind."
    );
    metrics::gauge!("app_worker_generation").set(f64::from(worker.generation()));
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .route(
            "/status/{code}",
            get(|Path(code): Path<u16>| async move {
                StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST)
            }),
        )
        .route(
            "/job",
            get(|Query(job): Query<Job>| async move {
                metrics::counter!("app_jobs_requested_total", "kind" => job.kind.clone())
                    .increment(1);
                wix_cluster_test_support::process_job(&job.kind, 0.03);
                ([("x-worker-pid", std::process::id().to_string())], "done")
            }),
        )
        .route(
            "/gauge/{name}/{value}",
            get(|Path((name, value)): Path<(String, String)>| async move {
                match value.parse::<f64>() {
                    Ok(value) => {
                        metrics::gauge!(name).set(value);
                        StatusCode::OK
                    }
                    Err(_) => StatusCode::BAD_REQUEST,
                }
            }),
        )
        .route(
            "/flood",
            get(|Query(flood): Query<Flood>| async move {
                let one = metrics::counter!("flood_one_total");
                for _ in 0..flood.increments {
                    one.increment(1);
                }
                for i in 0..flood.series {
                    metrics::counter!(format!("flood_{i}_total")).increment(1);
                }
                "flooded"
            }),
        );
    let listener = worker.listen(format!("127.0.0.1:{port}")).await?;
    tracing::info!("listening on {}", listener.local_addr()?);
    wix_cluster::http::serve(listener, app, &worker).await
}
