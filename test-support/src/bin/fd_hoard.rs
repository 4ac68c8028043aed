//! A test and benchmark fixture: every worker holds `OPEN_SOCKETS` (default 0) unbound
//! UDP sockets open for its whole life, as a busy server holds its connections, so that
//! what the master's `/metrics` pays per descriptor (`process_open_fds` reads
//! `/proc/<pid>/fd`) shows (`bench/scrape.py`). Each worker's soft descriptor limit
//! must allow them (raise it within `ulimit -Hn` before starting). `GET /` answers with
//! the pid and the count.

use std::os::fd::OwnedFd;

use axum::{Router, routing::get};
use nix::sys::socket::{AddressFamily, SockFlag, SockType, socket};

#[wix_cluster::main(workers = 4)]
async fn main(worker: wix_cluster::Worker) -> std::io::Result<()> {
    let port = std::env::var("PORT").unwrap_or_else(|_| "8080".to_owned());
    let wanted: usize = std::env::var("OPEN_SOCKETS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let mut hoard: Vec<OwnedFd> = Vec::with_capacity(wanted);
    for _ in 0..wanted {
        hoard.push(socket(
            AddressFamily::Inet,
            SockType::Datagram,
            SockFlag::SOCK_CLOEXEC,
            None,
        )?);
    }
    let held = hoard.len();
    tracing::info!("holding {held} sockets");
    let listener = worker.listen(format!("127.0.0.1:{port}")).await?;
    let pid = worker.pid();
    let app = Router::new().route("/", get(move || async move { format!("{pid} {held}") }));
    let served = wix_cluster::http::serve(listener, app, &worker).await;
    drop(hoard);
    served
}
