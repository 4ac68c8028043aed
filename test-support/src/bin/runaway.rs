//! Workers that stall, hog the CPU, bloat, or just serve a lot — to watch (and test)
//! the `Stall` plugin. Written with the builder instead of the macro, because which
//! guards are on depends on the environment.
//!
//!     STALL_TIMEOUT_MS=3000 CPU_PERCENT=80 cargo run -p wix-cluster-test-support --bin runaway
//!
//! Routes (each answers with the worker's pid): `/`, `/block?ms=N` (blocks the worker's
//! one runtime thread), `/hog` (starts a thread that spins forever), `/alloc?mb=N`
//! (allocates and keeps N MiB).
//!
//! Environment: `PORT` (default 8080); `STALL_TIMEOUT_MS` (default 30000);
//! `CPU_PERCENT` + `CPU_FOR_MS` (default off / 60000); `MAX_RSS_MB` (default off);
//! `MAX_REQUESTS` + `MAX_REQUESTS_JITTER` (default off / 0).

use std::process::ExitCode;
use std::time::Duration;

use axum::{Router, extract::Query, routing::get};
use wix_cluster::plugins::{Graceful, Respawn, Stall};
use wix_cluster::{Cluster, Worker};

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok()?.parse().ok()
}

fn main() -> ExitCode {
    let mut stall = Stall::default().timeout(Duration::from_millis(
        env_number("STALL_TIMEOUT_MS").unwrap_or(30_000),
    ));
    if let Some(percent) = env_number("CPU_PERCENT") {
        let cpu_for = Duration::from_millis(env_number("CPU_FOR_MS").unwrap_or(60_000));
        stall = stall.cpu_percent(percent as u32).cpu_for(cpu_for);
    }
    if let Some(mb) = env_number("MAX_RSS_MB") {
        stall = stall.max_rss(mb * 1024 * 1024);
    }
    if let Some(max) = env_number("MAX_REQUESTS") {
        stall = stall
            .max_requests(max)
            .max_requests_jitter(env_number("MAX_REQUESTS_JITTER").unwrap_or(0));
    }
    Cluster::builder()
        .workers(2)
        .plugin(Respawn::default())
        .plugin(Graceful::default())
        .plugin(stall)
        .run(app)
}

#[derive(serde::Deserialize)]
struct Millis {
    ms: u64,
}

#[derive(serde::Deserialize)]
struct Megabytes {
    mb: usize,
}

/// Memory the `/alloc` route keeps.
static KEPT: std::sync::Mutex<Vec<Vec<u8>>> = std::sync::Mutex::new(Vec::new());

async fn app(worker: Worker) -> std::io::Result<()> {
    let port = env_number("PORT").unwrap_or(8080) as u16;
    let listener = worker.listen(("127.0.0.1", port)).await?;
    let pid = worker.pid().to_string();
    let answer = move || {
        let pid = pid.clone();
        move || async move { pid }
    };
    let app = Router::new()
        .route("/", get(answer()))
        .route(
            "/block",
            get(|Query(q): Query<Millis>| async move {
                // Blocks the worker's only runtime thread: no heartbeat can go out.
                std::thread::sleep(Duration::from_millis(q.ms));
                "unblocked"
            }),
        )
        .route(
            "/hog",
            get({
                let pid = answer();
                move || {
                    std::thread::spawn(|| {
                        let mut x: u64 = 0;
                        loop {
                            x = std::hint::black_box(x.wrapping_add(1));
                        }
                    });
                    pid()
                }
            }),
        )
        .route(
            "/alloc",
            get({
                let pid = answer();
                move |Query(q): Query<Megabytes>| {
                    // Touch every page so that it is resident.
                    let block = vec![1u8; q.mb * 1024 * 1024];
                    KEPT.lock().unwrap_or_else(|p| p.into_inner()).push(block);
                    pid()
                }
            }),
        );
    wix_cluster::http::serve(listener, app, &worker).await
}
