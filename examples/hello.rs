//! Basic usage: four workers answer "Hi there" on one shared port.
//!
//!     cargo run --example hello          # then: curl -i localhost:8080
//!
//! `PORT` (default 8080) and `HOST` (default 0.0.0.0) choose the address; port 0 picks
//! a free one (the master logs it). Under systemd's socket activation, `SOCKET_NAME`
//! picks the passed socket by its name (`FileDescriptorName=`) instead. Each response
//! names the worker that served it in the `x-worker-id` and `x-worker-pid` headers.

use axum::{Router, routing::get};

#[wix_cluster::main(workers = 4, plugins(Respawn, Graceful))]
async fn main(worker: wix_cluster::Worker) -> std::io::Result<()> {
    let host = std::env::var("HOST").unwrap_or_else(|_| "0.0.0.0".to_owned());
    let port: u16 = match std::env::var("PORT") {
        Ok(port) => port.parse().map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("PORT={port:?} is not a port number"),
            )
        })?,
        Err(_) => 8080,
    };
    let listener = match std::env::var("SOCKET_NAME") {
        Ok(name) => worker.listen_named(&name).await?,
        Err(_) => worker.listen((host.as_str(), port)).await?,
    };

    let served_by = [
        ("x-worker-id", worker.id().to_string()),
        ("x-worker-pid", worker.pid().to_string()),
    ];
    let app = Router::new().route(
        "/",
        get(move || {
            let served_by = served_by.clone();
            async move { (served_by, "Hi there") }
        }),
    );
    wix_cluster::http::serve(listener, app, &worker).await
}
