//! An app that fails on demand, to watch (and test) supervision.
//!
//!     cargo run --example flaky
//!
//! Routes (each answers with the worker's pid):
//! - `GET /` — the pid;
//! - `GET /die` — panics in the handler: the worker announces it is going down, the
//!   master starts its replacement at once, and it drains;
//! - `GET /exit` — `process::exit(3)` without a word: `Respawn` replaces it after;
//! - `GET /slow?ms=N` — answers after N milliseconds.
//!
//! Environment: `PORT` (default 8080), `WORKERS`-style overrides as usual, and
//! - `CRASH_ON_START=1` — every worker's app fails before listening;
//! - `IGNORE_SHUTDOWN=1` — the app never stops when asked (the master kills it after
//!   the drain timeout);
//! - `DRAIN_TIMEOUT_MS` (default 5000; `forever` is `Duration::MAX`), `MAX_DEATHS` (default 10), `WITHIN_MS` (the
//!   death window, default 10000), `CYCLIC_POLICY` (`degrade`, the default, or `exit`)
//!   — plugin settings;
//! - `START_DELAY_MS` (default 0) — every worker's app waits this long before listening
//!   (a slow start, to watch readiness during a rolling restart).

use std::time::Duration;

use axum::{Router, extract::Query, routing::get};

fn drain_timeout() -> Duration {
    match std::env::var("DRAIN_TIMEOUT_MS").as_deref() {
        Ok("forever") => Duration::MAX,
        _ => Duration::from_millis(env_number("DRAIN_TIMEOUT_MS", 5000)),
    }
}

fn max_deaths() -> usize {
    env_number("MAX_DEATHS", 10) as usize
}

fn within() -> Duration {
    Duration::from_millis(env_number("WITHIN_MS", 10_000))
}

fn cyclic_policy() -> wix_cluster::plugins::CyclicPolicy {
    match std::env::var("CYCLIC_POLICY").as_deref() {
        Ok("exit") => wix_cluster::plugins::CyclicPolicy::Exit,
        _ => wix_cluster::plugins::CyclicPolicy::Degrade,
    }
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

#[derive(serde::Deserialize)]
struct Slow {
    ms: u64,
}

async fn die() -> &'static str {
    panic!("asked to die")
}

async fn exit() -> &'static str {
    std::process::exit(3)
}

#[wix_cluster::main(
    workers = 2,
    plugins(
        Respawn(
            max_deaths = max_deaths(),
            within = within(),
            on_cyclic = cyclic_policy()
        ),
        Graceful(timeout = drain_timeout())
    )
)]
async fn main(worker: wix_cluster::Worker) -> std::io::Result<()> {
    if std::env::var("CRASH_ON_START").is_ok_and(|v| v == "1") {
        return Err(std::io::Error::other(
            "CRASH_ON_START is set, refusing to start",
        ));
    }
    tokio::time::sleep(Duration::from_millis(env_number("START_DELAY_MS", 0))).await;
    let port = std::env::var("PORT").unwrap_or_else(|_| "8080".to_owned());
    let listener = worker.listen(format!("127.0.0.1:{port}")).await?;
    let pid = worker.pid().to_string();
    let app = Router::new()
        .route(
            "/",
            get({
                let pid = pid.clone();
                move || async move { pid }
            }),
        )
        .route("/die", get(die))
        .route("/exit", get(exit))
        .route(
            "/slow",
            get({
                let pid = pid.clone();
                move |Query(slow): Query<Slow>| async move {
                    tokio::time::sleep(Duration::from_millis(slow.ms)).await;
                    pid
                }
            }),
        );
    if std::env::var("IGNORE_SHUTDOWN").is_ok_and(|v| v == "1") {
        // Serves forever, deaf to the drain.
        return axum::serve(listener, app).await;
    }
    wix_cluster::http::serve(listener, app, &worker).await
}
