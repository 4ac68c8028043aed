//! A test fixture for `Autoscale` without HTTP: a queue consumer that never listens.
//! Each worker holds `JOBS` jobs (default 4) in hand for as long as it runs, counted in
//! the `wix_cluster_app_busy` gauge, so the worker is busy all the time with more
//! clients than one worker: the autoscaler scales it up.
//! `WIX_CLUSTER_AUTOSCALE` sets the bounds (the cluster starts with one worker).

use std::time::Duration;

#[wix_cluster::main(workers = 1, plugins(Autoscale(min = 1, max = 2)))]
async fn main(worker: wix_cluster::Worker) -> std::io::Result<()> {
    let jobs: u32 = std::env::var("JOBS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(4);
    let busy = metrics::gauge!(wix_cluster::metrics::APP_BUSY);
    for _ in 0..jobs {
        busy.increment(1.0);
    }
    tracing::info!("worker {} has {jobs} jobs in hand", worker.id());
    worker.shutdown().await;
    busy.decrement(f64::from(jobs));
    tokio::time::sleep(Duration::from_millis(10)).await;
    Ok(())
}
