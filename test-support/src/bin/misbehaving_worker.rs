//! A test fixture: a worker that corrupts its own channel to the master.
//!
//! `GET /garbage` answers with the worker's pid, then the worker writes junk bytes on
//! its channel to the master (found as the process's one Unix socket). The master must
//! drop that worker and keep the others serving. `GET /` answers with the pid.

use std::os::fd::{AsRawFd, BorrowedFd};

use axum::{Router, routing::get};

#[wix_cluster::main(workers = 2, plugins(Respawn, Graceful))]
async fn main(worker: wix_cluster::Worker) -> std::io::Result<()> {
    let port = std::env::var("PORT").unwrap_or_else(|_| "8080".to_owned());
    let listener = worker.listen(format!("127.0.0.1:{port}")).await?;
    let pid = worker.pid();
    let app = Router::new()
        .route("/", get(move || async move { pid.to_string() }))
        .route(
            "/garbage",
            get(move || async move {
                tokio::spawn(async {
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    write_garbage_to_master();
                });
                pid.to_string()
            }),
        );
    wix_cluster::http::serve(listener, app, &worker).await
}

/// Writes a frame header announcing an absurd length, then junk, on every Unix socket
/// this process holds (the channel to the master is the only one).
fn write_garbage_to_master() {
    use nix::sys::socket::{AddressFamily, SockaddrLike, SockaddrStorage, getsockname};
    let Ok(fds) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    for fd in fds.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok()) {
        let is_unix = getsockname::<SockaddrStorage>(fd)
            .is_ok_and(|addr| addr.family() == Some(AddressFamily::Unix));
        if is_unix {
            // SAFETY: the descriptor is open (just listed) and only borrowed for a write.
            let fd = unsafe { BorrowedFd::borrow_raw(fd) };
            let junk = [0xff, 0xff, 0xff, 0x7f, 0xde, 0xad, 0xbe, 0xef];
            let _ = nix::unistd::write(fd, &junk);
            tracing::warn!("wrote garbage on fd {}", fd.as_raw_fd());
        }
    }
}
