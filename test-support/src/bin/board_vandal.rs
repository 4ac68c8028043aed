//! A test fixture: a worker that scribbles on the fair-accepting board every worker of
//! the cluster reads before it accepts a connection.
//!
//! `GET /` answers "Hi there" naming the worker's pid in `x-worker-pid`, as `hello`
//! does. `GET /vandalize` answers too, then from then on, every 100 ms, the worker
//! overwrites the whole board (its mapping of `memfd:wix-cluster-board`) with
//! the most harmful lie it can tell: the header says every slot is in use and each of
//! the 2048 slots holds an accepting, live process with no connection (so that every
//! real worker holding one connection seems over its share); it logs
//! `scribbled on the board` the first time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::{Router, routing::get};

/// The board's layout as this build of wix-cluster has it: lines of 8 cells, a header
/// line, then 2048 slots.
const LINE: usize = 8;
const SLOTS: usize = 2048;
const CELLS: usize = LINE * (1 + SLOTS);

#[wix_cluster::main(workers = 2, plugins(Respawn, Graceful))]
async fn main(worker: wix_cluster::Worker) -> std::io::Result<()> {
    let port = std::env::var("PORT").unwrap_or_else(|_| "8080".to_owned());
    let listener = worker.listen(format!("127.0.0.1:{port}")).await?;
    let served_by = [("x-worker-pid", worker.pid().to_string())];
    let app = Router::new()
        .route(
            "/",
            get({
                let served_by = served_by.clone();
                move || async move { (served_by, "Hi there") }
            }),
        )
        .route(
            "/vandalize",
            get(move || async move {
                tokio::spawn(vandalize());
                (served_by, "vandalizing")
            }),
        );
    wix_cluster::http::serve(listener, app, &worker).await
}

async fn vandalize() {
    let Some(cells) = board() else {
        tracing::error!("the board is not mapped in this process");
        return;
    };
    let mut first = true;
    loop {
        let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
            .map(|t| t.tv_sec() as u64 * 1000 + t.tv_nsec() as u64 / 1_000_000)
            .unwrap_or(0);
        cells[1].store(u64::MAX, Ordering::Relaxed);
        for slot in 0..SLOTS {
            let line = &cells[LINE * (1 + slot)..LINE * (2 + slot)];
            line[0].store(0, Ordering::Relaxed);
            line[1].store(1, Ordering::Relaxed);
            line[2].store(now, Ordering::Relaxed);
        }
        if first {
            tracing::warn!("scribbled on the board");
            first = false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The board, as wix-cluster mapped it in this process (found in `/proc/self/maps`).
fn board() -> Option<&'static [AtomicU64]> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    let line = maps
        .lines()
        .find(|line| line.contains("memfd:wix-cluster-board"))?;
    let (start, rest) = line.split_once('-')?;
    let end = rest.split_whitespace().next()?;
    let start = usize::from_str_radix(start, 16).ok()?;
    let end = usize::from_str_radix(end, 16).ok()?;
    if end.saturating_sub(start) < CELLS * 8 || start == 0 {
        return None;
    }
    // SAFETY: wix-cluster maps the board read-write, page-aligned, for the worker's
    // whole life, and only ever accesses it as atomics; it is `CELLS` cells long
    // (checked above).
    Some(unsafe { std::slice::from_raw_parts(start as *const AtomicU64, CELLS) })
}
