//! Workers that follow the load: the `Autoscale` plugin between `min = 1` and the CPUs.
//!
//!     cargo run --release --example autoscale
//!     wrk -c16 -d30s 'http://localhost:8080/burn?ms=5'   # then watch: wix-cluster ls
//!
//! Routes: `GET /burn?ms=N` spins the CPU for N ms (default 5) and answers `burned N ms`;
//! `GET /sleep?ms=N` waits N ms without using the CPU; `GET /ws` is a WebSocket that
//! echoes what it is sent (an idle one is not busy); `GET /` answers `hello`. Each
//! response names its worker in `x-worker-pid`.
//!
//! `PORT` (default 8080; 0 picks a free one) and `HOST` (default 0.0.0.0) choose the
//! address; `IDLE_FOR` (default `60s`) is how long the cluster must stay idle before a
//! worker is retired; `MAX_DEATHS` (default 10) is `Respawn`'s cyclic-death threshold.
//! `WIX_CLUSTER_AUTOSCALE=min..max` changes the bounds. When the file named by
//! `CRASH_FILE` exists, a new worker refuses to start (a crash-looping build, for the
//! tests); running workers are not affected.

use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::Query;
use axum::extract::ws::{Message, WebSocketUpgrade};
use axum::routing::get;

/// `IDLE_FOR` (default 60 s).
fn idle_for() -> Duration {
    std::env::var("IDLE_FOR")
        .ok()
        .and_then(|idle| humantime::parse_duration(&idle).ok())
        .unwrap_or(Duration::from_secs(60))
}

/// `MAX_DEATHS` (default 10).
fn max_deaths() -> usize {
    std::env::var("MAX_DEATHS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(10)
}

#[derive(serde::Deserialize)]
struct Millis {
    ms: Option<u64>,
}

/// Spins the CPU for `ms` milliseconds (at most 10 s).
fn burn(ms: u64) {
    let until = Instant::now() + Duration::from_millis(ms.min(10_000));
    let mut x = 0u64;
    while Instant::now() < until {
        x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
    }
}

#[wix_cluster::main(
    workers = 1,
    plugins(
        Respawn(max_deaths = max_deaths()),
        Graceful,
        Autoscale(min = 1, max = "auto", idle_for = idle_for())
    )
)]
async fn main(worker: wix_cluster::Worker) -> std::io::Result<()> {
    if let Ok(file) = std::env::var("CRASH_FILE") {
        if std::path::Path::new(&file).exists() {
            return Err(std::io::Error::other(format!(
                "{file} exists: refusing to start"
            )));
        }
    }
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
    let listener = worker.listen((host.as_str(), port)).await?;
    let pid = worker.pid().to_string();
    let app = Router::new()
        .route("/", get(|| async { "hello" }))
        .route(
            "/burn",
            get(|Query(q): Query<Millis>| async move {
                let ms = q.ms.unwrap_or(5);
                burn(ms);
                format!("burned {ms} ms")
            }),
        )
        .route(
            "/sleep",
            get(|Query(q): Query<Millis>| async move {
                let ms = q.ms.unwrap_or(1000).min(60_000);
                tokio::time::sleep(Duration::from_millis(ms)).await;
                format!("slept {ms} ms")
            }),
        )
        .route(
            "/ws",
            get(|upgrade: WebSocketUpgrade| async move {
                upgrade.on_upgrade(|mut socket| async move {
                    while let Some(Ok(message)) = socket.recv().await {
                        if let Message::Text(text) = message {
                            if socket.send(Message::Text(text)).await.is_err() {
                                break;
                            }
                        }
                    }
                })
            }),
        )
        .layer(axum::middleware::from_fn(
            move |request: axum::extract::Request, next: axum::middleware::Next| {
                let pid = pid.clone();
                async move {
                    let mut response = next.run(request).await;
                    if let Ok(value) = axum::http::HeaderValue::from_str(&pid) {
                        response.headers_mut().insert("x-worker-pid", value);
                    }
                    response
                }
            },
        ));
    wix_cluster::http::serve(listener, app, &worker).await
}
