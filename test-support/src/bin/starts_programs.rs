//! A test fixture: an app that starts programs of its own, as apps do (a helper, a
//! converter, a shell pipeline), to check what becomes of them when its worker ends.
//!
//! Each worker, before it serves, starts `sleep 300` and logs `worker N (pid W) started
//! pid P` with its pid. With `ORPHAN=1` it also starts a shell that double-forks: the
//! shell exits at once and its background child, orphaned, is adopted by the nearest
//! subreaper (the watch-mode keeper); that orphan exits 42 on SIGTERM, SIGHUP or
//! SIGUSR1. `GET /` answers with the worker's pid.

use axum::{Router, routing::get};

/// The orphan's script: exits 42 on the signals a keeper might forward to it.
const ORPHAN: &str = "trap 'exit 42' TERM HUP USR1; while :; do sleep 0.2; done";

#[wix_cluster::main(workers = 2, plugins(Respawn, Graceful))]
async fn main(worker: wix_cluster::Worker) -> std::io::Result<()> {
    let port = std::env::var("PORT").unwrap_or_else(|_| "8080".to_owned());
    let listener = worker.listen(format!("127.0.0.1:{port}")).await?;
    // Not waited for: a std `Child` dropped leaves its process running.
    let sleep = std::process::Command::new("sleep").arg("300").spawn()?;
    let (id, own) = (worker.id(), worker.pid());
    tracing::info!("worker {id} (pid {own}) started pid {}", sleep.id());
    if std::env::var("ORPHAN").is_ok_and(|v| v == "1") {
        let mut shell = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("sh -c \"{ORPHAN}\" >/dev/null 2>&1 &"))
            .spawn()?;
        shell.wait()?;
        tracing::info!("worker {} left an orphan", worker.id());
    }
    let pid = worker.pid();
    let app = Router::new().route("/", get(move || async move { pid.to_string() }));
    wix_cluster::http::serve(listener, app, &worker).await
}
