//! Server-sent events that survive a rolling restart: a numbered stream that ends
//! cleanly when its worker drains, and that the client's EventSource resumes on another
//! worker from its `Last-Event-ID`, with no gap and no duplicate.
//!
//!     cargo run --example sse            # then: curl -N localhost:8080/events
//!
//! `GET /events` streams `text/event-stream` events numbered from 1, one every
//! `INTERVAL_MS` (default 100): event `n` is `id: n` and `data: tick n, square n²`,
//! the same whichever worker sends it (a pure function of `n`), so that a stream resumed
//! elsewhere goes on exactly where it stopped. The first event of each response carries
//! `retry: 500`: the client reconnects 500 ms after a stream ends. A request with a
//! `Last-Event-ID: k` header (what EventSource sends when it reconnects) resumes at
//! `k + 1`. Each response names its worker in `x-worker-pid`.
//!
//! When the worker is asked to stop (a rolling restart, an upgrade, a stop), each
//! stream ends after the event it is at: the body finishes, the connection closes, and
//! the client reconnects, to a worker that stays (the draining one accepts no more). A
//! stream that did not end would hold its worker until the drain timeout and then be
//! cut.
//!
//! `PORT` (default 8080; 0 picks a free one) and `HOST` (default 0.0.0.0) choose the
//! address.

use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::response::sse::{Event, Sse};
use axum::routing::get;
use tokio_stream::wrappers::ReceiverStream;

/// How long a client waits before it reconnects, sent in each response's first event.
const RETRY: Duration = Duration::from_millis(500);

/// Event `n`: the same on every worker.
fn event(n: u64) -> Event {
    Event::default()
        .id(n.to_string())
        .data(format!("tick {n}, square {}", n.wrapping_mul(n)))
}

/// The first event to send: the one after the client's `Last-Event-ID`, or 1.
fn first_event(headers: &HeaderMap) -> u64 {
    headers
        .get("last-event-id")
        .and_then(|id| id.to_str().ok())
        .and_then(|id| id.trim().parse::<u64>().ok())
        .map_or(1, |last| last.saturating_add(1))
}

#[wix_cluster::main(workers = 2, plugins(Respawn, Graceful))]
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
    let interval = Duration::from_millis(
        std::env::var("INTERVAL_MS")
            .ok()
            .and_then(|ms| ms.parse().ok())
            .unwrap_or(100),
    );
    let listener = worker.listen((host.as_str(), port)).await?;

    let handle = worker.clone();
    let app = Router::new().route(
        "/events",
        get(move |headers: HeaderMap| {
            let stop = handle.shutdown();
            let pid = handle.pid();
            async move {
                let mut n = first_event(&headers);
                // A channel of one: the stream waits for the client, never queues.
                let (events, stream) = tokio::sync::mpsc::channel::<Result<Event, Infallible>>(1);
                tokio::spawn(async move {
                    tokio::pin!(stop);
                    let mut first = true;
                    let mut ticks = tokio::time::interval(interval);
                    loop {
                        tokio::select! {
                            // Draining: the stream ends here (the sender dropped), after
                            // the last event sent, which the client has whole.
                            () = &mut stop => return,
                            _ = ticks.tick() => {}
                        }
                        let mut next = event(n);
                        if first {
                            next = next.retry(RETRY);
                            first = false;
                        }
                        if events.send(Ok(next)).await.is_err() {
                            return; // the client went away
                        }
                        n = n.saturating_add(1);
                    }
                });
                (
                    [("x-worker-pid", pid.to_string())],
                    Sse::new(ReceiverStream::new(stream)),
                )
                    .into_response()
            }
        }),
    );
    wix_cluster::http::serve(listener, app, &worker).await
}
