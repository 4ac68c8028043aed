//! The benchmarks' baseline: the `hello` app without wix-cluster. One process, a tokio
//! runtime with 2 worker threads, axum served by `axum::serve` (hyper underneath), the
//! same route and the same response ("Hi there" with `x-worker-id` and `x-worker-pid`
//! headers, so that both servers send the same bytes).
//!
//!     cargo run --release --example bare_hyper      # then: curl -i localhost:8080
//!
//! `PORT` (default 8080; 0 picks a free one) and `HOST` (default 0.0.0.0) choose the
//! address; it prints `listening on <addr>` once bound.

use axum::serve::ListenerExt;
use axum::{Router, routing::get};

fn main() -> std::io::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(serve())
}

async fn serve() -> std::io::Result<()> {
    let host = std::env::var("HOST").unwrap_or_else(|_| "0.0.0.0".to_owned());
    let port = std::env::var("PORT").unwrap_or_else(|_| "8080".to_owned());
    let listener = tokio::net::TcpListener::bind(format!("{host}:{port}")).await?;
    println!("listening on {}", listener.local_addr()?);

    let served_by = [
        ("x-worker-id", "0".to_owned()),
        ("x-worker-pid", std::process::id().to_string()),
    ];
    let app = Router::new().route(
        "/",
        get(move || {
            let served_by = served_by.clone();
            async move { (served_by, "Hi there") }
        }),
    );
    // TCP_NODELAY on every connection, as wix_cluster::http::serve does.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app).await
}
