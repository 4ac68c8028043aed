//! A cluster-wide request rate: every worker reports its requests per second
//! over the exchange (`{ evt: "req.per.second", value }`), and the master adds them up
//! and logs the cluster's rate. The same numbers also go through
//! `wix_cluster::metrics` (custom metrics the master collects), which the `Statsd`
//! plugin publishes.
//!
//!     STATSD_ADDR=127.0.0.1:8125 cargo run --example exchange_metrics
//!
//! Environment: `PORT` (default 8080), `STATSD_ADDR` (default 127.0.0.1:8125),
//! `STATSD_INTERVAL_MS` (default 10000), `REPORT_MS` (how often workers report, 1000).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::{Router, routing::get};
use wix_cluster::{Master, Peer, Plugin, PluginError};

#[wix_cluster::exchange("management.app")]
struct ReqPerSecond {
    evt: String,
    value: u64,
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn statsd_addr() -> String {
    std::env::var("STATSD_ADDR").unwrap_or_else(|_| "127.0.0.1:8125".to_owned())
}

fn statsd_interval() -> Duration {
    Duration::from_millis(env_number("STATSD_INTERVAL_MS", 10_000))
}

/// The master side: adds up what the workers report.
#[derive(Default)]
struct RateAggregator;

impl Plugin for RateAggregator {
    fn name(&self) -> &str {
        "RateAggregator"
    }

    async fn on_master(&self, _master: &Master) -> Result<(), PluginError> {
        let mut reports = ReqPerSecond::subscribe()?;
        tokio::spawn(async move {
            let mut latest = BTreeMap::new();
            while let Some((from, report)) = reports.recv().await {
                if let Peer::Worker(id) = from {
                    latest.insert(id, report.value);
                }
                let total: u64 = latest.values().sum();
                tracing::info!(
                    "cluster {}: {total} (from {} workers)",
                    report.evt,
                    latest.len()
                );
            }
        });
        Ok(())
    }
}

#[wix_cluster::main(
    workers = 2,
    plugins(
        RateAggregator,
        Respawn,
        Graceful,
        wix_cluster::plugins::Statsd(addr = statsd_addr(), interval = statsd_interval())
    )
)]
async fn main(worker: wix_cluster::Worker) -> std::io::Result<()> {
    let served = Arc::new(AtomicU64::new(0));
    let report_every = Duration::from_millis(env_number("REPORT_MS", 1000));
    tokio::spawn({
        let served = served.clone();
        async move {
            let mut ticks = tokio::time::interval(report_every);
            let mut before = 0;
            loop {
                ticks.tick().await;
                let now = served.load(Ordering::Relaxed);
                let per_second = (now - before) * 1000 / report_every.as_millis().max(1) as u64;
                before = now;
                let _ = ReqPerSecond {
                    evt: "req.per.second".to_owned(),
                    value: per_second,
                }
                .send();
                wix_cluster::metrics::gauge("req.per.second", per_second as f64);
            }
        }
    });
    let port = env_number("PORT", 8080) as u16;
    let listener = worker.listen(("127.0.0.1", port)).await?;
    let app = Router::new().route(
        "/",
        get(move || {
            served.fetch_add(1, Ordering::Relaxed);
            wix_cluster::metrics::counter("requests.served", 1);
            async { "Hi there" }
        }),
    );
    wix_cluster::http::serve(listener, app, &worker).await
}
