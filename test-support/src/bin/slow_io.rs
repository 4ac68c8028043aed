//! A test fixture: routes that are slow on purpose, on the app's port and on the
//! management port.
//!
//! - `GET /stream?secs=S&pause=P` (app): a streamed response that lasts about `S`
//!   seconds: a 1 KiB chunk every 50 ms, except for `P` seconds of silence in the middle,
//!   then the line `end of stream\n`;
//! - `POST /upload` (app and management, under its mount point): reads the whole request
//!   body, then answers how many bytes it read (`read N bytes`).
//!
//! One worker; the port is `PORT` (0 for any), the connection settings come from the
//! `WIX_CLUSTER_*` variables.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::Query;
use axum::routing::{get, post};
use axum::{Router, response::IntoResponse};
use serde::Deserialize;

/// The last line of every `/stream` response.
const END: &str = "end of stream\n";

#[derive(Deserialize)]
struct Stream {
    secs: Option<u64>,
    pause: Option<u64>,
}

/// `GET /stream`: see the module's comment.
async fn stream(Query(query): Query<Stream>) -> impl IntoResponse {
    let total = Duration::from_secs(query.secs.unwrap_or(20));
    let pause = Duration::from_secs(query.pause.unwrap_or(0));
    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(1);
    tokio::spawn(async move {
        let started = tokio::time::Instant::now();
        let pause_at = total.saturating_sub(pause) / 2;
        let mut paused = false;
        while started.elapsed() < total {
            if !paused && started.elapsed() >= pause_at {
                paused = true;
                tokio::time::sleep(pause).await;
                continue;
            }
            if sender
                .send(Ok(Bytes::from(vec![b'.'; 1024])))
                .await
                .is_err()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = sender.send(Ok(Bytes::from_static(END.as_bytes()))).await;
    });
    Body::from_stream(Chunks(receiver))
}

/// A channel's receiver as a stream of chunks.
struct Chunks(tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>);

impl futures_core::Stream for Chunks {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}

/// `POST /upload`: reads the whole body, whatever its size, and says how long it was.
async fn upload(body: Body) -> String {
    use axum::body::HttpBody;
    let mut body = std::pin::pin!(body);
    let mut read = 0usize;
    while let Some(frame) = std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
        match frame {
            Ok(frame) => read += frame.data_ref().map_or(0, Bytes::len),
            Err(e) => return format!("reading the body failed after {read} bytes: {e}"),
        }
    }
    format!("read {read} bytes")
}

fn management_pages() -> Router {
    Router::new().route("/upload", post(upload))
}

#[wix_cluster::main(workers = 1, plugins(Respawn, Graceful), management_page = management_pages)]
async fn main(worker: wix_cluster::Worker) -> std::io::Result<()> {
    let port = std::env::var("PORT").unwrap_or_else(|_| "0".to_owned());
    let listener = worker.listen(format!("127.0.0.1:{port}")).await?;
    let app = Router::new()
        .route("/stream", get(stream))
        .route("/upload", post(upload));
    wix_cluster::http::serve(listener, app, &worker).await
}
