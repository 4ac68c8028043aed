//! Exchange throughput and latency, measured the way Node's cluster benchmark measures
//! its IPC (`server.js --ipc-bench M`), so that `bench/ipc.py` can compare the two.
//!
//!     cargo run --release --example ipc_bench
//!
//! 1. Each worker sends `IPC_MSGS` (default 200000) small messages,
//!    `{ evt: "req.per.second", value: i }`, to the master as fast as it can; the master
//!    times the first to the last and prints `ipc msgs=.. secs=.. msgs_per_s=..`.
//! 2. The master broadcasts `PINGS` (default 1000) pings, each after a 1 ms sleep
//!    (about 2 ms apart: tokio's timer rounds up), each stamped with the monotonic
//!    clock (shared by all processes of the machine); every worker
//!    measures each ping's one-way latency and reports back; the master prints
//!    `broadcast pings=.. p50_us=.. p99_us=..` and stops the cluster.

use std::time::Duration;

use wix_cluster::{Master, Plugin, PluginError};

#[wix_cluster::exchange("bench.metric")]
struct Metric {
    evt: String,
    value: u64,
}

#[wix_cluster::exchange("bench.ping")]
struct Ping {
    sent_ns: u64,
}

#[wix_cluster::exchange("bench.latencies")]
struct Latencies {
    ns: Vec<u64>,
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Nanoseconds on the machine-wide monotonic clock.
fn now_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
        .unwrap_or(0)
}

#[derive(Default)]
struct Bench;

impl Plugin for Bench {
    fn name(&self) -> &str {
        "Bench"
    }

    async fn on_master(&self, master: &Master) -> Result<(), PluginError> {
        let workers = master.desired_workers() as u64;
        let total = env_number("IPC_MSGS", 200_000) * workers;
        let pings = env_number("PINGS", 1000);
        let mut metrics = Metric::subscribe()?;
        let mut latencies = Latencies::subscribe()?;
        let master = master.clone();
        tokio::spawn(async move {
            let mut got = 0;
            let mut start = None;
            while got < total {
                let Some(_) = metrics.recv().await else {
                    return;
                };
                start.get_or_insert_with(std::time::Instant::now);
                got += 1;
            }
            let secs = start.map_or(0.0, |s| s.elapsed().as_secs_f64());
            tracing::info!(
                "ipc msgs={total} secs={secs:.3} msgs_per_s={}",
                (total as f64 / secs).round()
            );
            for _ in 0..pings {
                let _ = Ping::broadcast(Ping { sent_ns: now_ns() });
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let mut all = Vec::new();
            for _ in 0..workers {
                let Some((_, reported)) = latencies.recv().await else {
                    return;
                };
                all.extend(reported.ns);
            }
            all.sort_unstable();
            let at = |q: f64| {
                all.get(((all.len() as f64 - 1.0) * q) as usize)
                    .copied()
                    .unwrap_or(0)
            };
            tracing::info!(
                "broadcast pings={} p50_us={:.1} p99_us={:.1}",
                all.len(),
                at(0.5) as f64 / 1000.0,
                at(0.99) as f64 / 1000.0
            );
            master.shutdown(0);
        });
        Ok(())
    }
}

#[wix_cluster::main(workers = 2, plugins(Bench))]
async fn main(worker: wix_cluster::Worker) -> std::io::Result<()> {
    let messages = env_number("IPC_MSGS", 200_000);
    let pings = env_number("PINGS", 1000) as usize;
    let mut from_master = Ping::subscribe().map_err(std::io::Error::other)?;
    tokio::spawn(async move {
        let mut ns = Vec::with_capacity(pings);
        while ns.len() < pings {
            let Some((_, ping)) = from_master.recv().await else {
                return;
            };
            ns.push(now_ns().saturating_sub(ping.sent_ns));
        }
        let _ = Latencies { ns }.send();
    });
    // Like Node's benchmark: give the master a moment, then flood it.
    tokio::time::sleep(Duration::from_millis(200)).await;
    for value in 0..messages {
        Metric {
            evt: "req.per.second".to_owned(),
            value,
        }
        .send()
        .map_err(std::io::Error::other)?;
        if value % 4096 == 0 {
            tokio::task::yield_now().await;
        }
    }
    worker.shutdown().await;
    Ok(())
}
