//! A test fixture: a worker that writes garbage over its own metrics segment, the
//! shared memory the master reads its values from.
//!
//! `/count` adds 1 to the counter `scribbled_total` and records 0.1 in the histogram
//! `scribbled_seconds`; `/scribble?pattern=zero|random` overwrites every byte of the
//! segment (found as `memfd:wix-cluster-metrics` in `/proc/self/maps`, written through
//! `/proc/self/mem`, as a stray pointer would) with zeros or pseudo-random bytes, and
//! answers `scribbled <bytes>`.

use std::io::{Seek, SeekFrom, Write};

use axum::extract::Query;
use axum::{Router, routing::get};

#[derive(serde::Deserialize)]
struct Scribble {
    pattern: String,
}

/// The address range of this process's metrics segment.
fn segment() -> std::io::Result<(u64, u64)> {
    let maps = std::fs::read_to_string("/proc/self/maps")?;
    let line = maps
        .lines()
        .find(|line| line.contains("memfd:wix-cluster-metrics"))
        .ok_or_else(|| std::io::Error::other("no metrics segment in /proc/self/maps"))?;
    let range = line.split(' ').next().unwrap_or_default();
    let (start, end) = range
        .split_once('-')
        .ok_or_else(|| std::io::Error::other(format!("a strange line: {line}")))?;
    let parse = |hex: &str| u64::from_str_radix(hex, 16).map_err(std::io::Error::other);
    Ok((parse(start)?, parse(end)?))
}

fn scribble(pattern: &str) -> std::io::Result<u64> {
    let (start, end) = segment()?;
    let len = usize::try_from(end - start).map_err(std::io::Error::other)?;
    let mut garbage = vec![0u8; len];
    if pattern == "random" {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for chunk in garbage.chunks_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
        }
    }
    let mut mem = std::fs::OpenOptions::new()
        .write(true)
        .open("/proc/self/mem")?;
    mem.seek(SeekFrom::Start(start))?;
    mem.write_all(&garbage)?;
    Ok(len as u64)
}

#[wix_cluster::main(workers = 1, plugins(Respawn, Graceful))]
async fn main(worker: wix_cluster::Worker) -> std::io::Result<()> {
    let port = std::env::var("PORT").unwrap_or_else(|_| "8080".to_owned());
    let listener = worker.listen(format!("127.0.0.1:{port}")).await?;
    let app = Router::new()
        .route(
            "/count",
            get(|| async {
                metrics::counter!("scribbled_total").increment(1);
                metrics::histogram!("scribbled_seconds").record(0.1);
                "counted"
            }),
        )
        .route(
            "/scribble",
            get(|Query(q): Query<Scribble>| async move {
                match scribble(&q.pattern) {
                    Ok(bytes) => format!("scribbled {bytes}"),
                    Err(e) => format!("failed: {e}"),
                }
            }),
        );
    wix_cluster::http::serve(listener, app, &worker).await
}
