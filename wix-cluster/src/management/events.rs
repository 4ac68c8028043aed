//! `GET /events` (the master's event log, newest first, `?since=` cursor) and
//! `GET /events/stream` (the same entries live, as Server-Sent Events, oldest first).
//!
//! A stream first sends what the log holds after its cursor (`Last-Event-ID`, which an
//! `EventSource` sends when it reconnects, or `?since=`; without one it starts with the
//! next entry), then each new entry as it is recorded. A client too slow to keep up is
//! caught up from the log; entries the log no longer holds are announced by a `gap`
//! event, never skipped silently. At most [`MAX_STREAMS`] streams are open at once
//! (503 past it). A comment is sent when nothing else is, often enough that the
//! connection's idle timeout never closes a stream whose client reads; a stream whose
//! client takes nothing sent to it for the idle timeout is closed (`delivery`). Streams end when the app stops
//! accepting at an upgrade's handover: an `EventSource` reconnects, to the new master.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::{Semaphore, broadcast, mpsc, watch};

use super::delivery::{Delivery, Socket};
use super::routes::{Ctx, error, unix_seconds};
use crate::event_log::EventLog;
use crate::{EVENT_LOG_CAPACITY, EventRecord};

/// How many event streams may be open at once.
pub(crate) const MAX_STREAMS: usize = 32;

/// The longest a stream stays silent (a comment then), unless the idle timeout is shorter.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// How many events wait for a slow stream client before it is caught up from the log.
const STREAM_BUFFER: usize = 64;

/// The open streams' bound, how often they send a keep-alive comment, and how long a
/// client may take none of what its stream sent.
pub(crate) struct Streams {
    permits: Arc<Semaphore>,
    keep_alive: Duration,
    /// The connections' idle timeout: a stream whose client took nothing sent to it
    /// for that long is closed.
    idle: Duration,
    /// Turns true when the app stops accepting: streams end.
    stopped: watch::Receiver<bool>,
}

impl Streams {
    /// Streams that keep a connection with idle timeout `idle` alive, and end when
    /// `stopped` turns true.
    pub(crate) fn new(idle: Duration, stopped: watch::Receiver<bool>) -> Streams {
        Streams {
            permits: Arc::new(Semaphore::new(MAX_STREAMS)),
            keep_alive: KEEP_ALIVE.min(idle / 3).max(Duration::from_millis(50)),
            idle,
            stopped,
        }
    }
}

#[derive(Deserialize)]
pub(crate) struct Since {
    since: Option<u64>,
}

/// One entry as JSON: `{seq, time, kind, worker: {id, generation, pid} | null, cause}`.
fn entry(record: &EventRecord) -> Value {
    json!({
        "seq": record.seq,
        "time": unix_seconds(record.time),
        "kind": record.kind,
        "worker": record.worker.map(|w| json!({
            "id": w.id.get(),
            "generation": w.generation,
            "pid": w.pid,
        })),
        "cause": record.cause,
    })
}

fn bad_since() -> Response {
    error(
        StatusCode::BAD_REQUEST,
        "since must be a whole number: the seq of the last event seen",
    )
}

/// `GET /events[?since=N]`: the entries after `N` (every one kept without it), newest
/// first, with the latest seq (the next `since`), the oldest kept and the capacity.
pub(crate) async fn page(
    State(ctx): State<Ctx>,
    query: Result<Query<Since>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(Since { since })) = query else {
        return bad_since();
    };
    let log = ctx.master.event_log();
    let (latest, oldest) = log.bounds();
    let events: Vec<Value> = log.since(since).iter().map(entry).collect();
    Json(json!({
        "events": events,
        "latest": latest,
        "oldest": oldest,
        "capacity": EVENT_LOG_CAPACITY,
    }))
    .into_response()
}

/// `GET /events/stream[?since=N]`, or with `Last-Event-ID: N`: Server-Sent Events, one
/// per entry (`id` its seq, `data` its JSON as in `/events`).
pub(crate) async fn stream(
    State(ctx): State<Ctx>,
    socket: Option<Extension<Socket>>,
    headers: HeaderMap,
    query: Result<Query<Since>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(Since { since })) = query else {
        return bad_since();
    };
    let last_event_id = headers
        .get("last-event-id")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok());
    let Ok(permit) = ctx.streams.permits.clone().try_acquire_owned() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{MAX_STREAMS} event streams are open already; try again later"),
        );
    };
    let (sender, items) = mpsc::channel(STREAM_BUFFER);
    let log = ctx.master.event_log().clone();
    let mut stopped = ctx.streams.stopped.clone();
    let delivery = socket.and_then(|Extension(socket)| Delivery::of(socket));
    let idle = ctx.streams.idle;
    tokio::spawn(async move {
        // The stream's place is held while this task runs: until the client is gone,
        // the app stops, or the client takes nothing for the idle timeout.
        let _permit = permit;
        tokio::select! {
            () = feed(log, last_event_id.or(since), sender) => {}
            // Dropping the sender ends the response.
            () = until_stopped(&mut stopped) => {}
            () = until_stalled(delivery, idle) => {
                tracing::info!(
                    "closed an event stream whose client took nothing for {idle:?} \
                     (the idle timeout)"
                );
            }
        }
    });
    let keep_alive = KeepAlive::new().interval(ctx.streams.keep_alive);
    Sse::new(Feed { items })
        .keep_alive(keep_alive)
        .into_response()
}

/// Resolves once the stream's client has taken nothing sent to it for `idle`, the
/// connection aborted (never, when its socket cannot be watched).
async fn until_stalled(delivery: Option<Delivery>, idle: Duration) {
    match delivery {
        Some(delivery) => {
            let every = (idle / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
            delivery.until_stalled(idle, every).await;
        }
        None => std::future::pending().await,
    }
}

/// Resolves once the app stops accepting (never, when nothing can ask it to).
async fn until_stopped(stopped: &mut watch::Receiver<bool>) {
    if stopped.wait_for(|stopped| *stopped).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// What a stream's task hands its response: an entry, or the news that the log no
/// longer holds the entries between two seqs.
#[derive(Debug, PartialEq, Eq)]
enum Item {
    Entry(EventRecord),
    Gap { after: u64, before: u64 },
}

impl Item {
    fn to_sse(&self) -> Event {
        match self {
            Item::Entry(record) => Event::default()
                .id(record.seq.to_string())
                .data(entry(record).to_string()),
            Item::Gap { after, before } => {
                let gap = json!({ "after": after, "before": before, "missed": before - after - 1 });
                Event::default().event("gap").data(gap.to_string())
            }
        }
    }
}

/// The events of one stream, as its task sends them.
struct Feed {
    items: mpsc::Receiver<Item>,
}

impl futures_core::Stream for Feed {
    type Item = Result<Event, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.items
            .poll_recv(cx)
            .map(|item| item.map(|item| Ok(item.to_sse())))
    }
}

/// Sends the log's entries after `last` (oldest first), announcing a gap when the log
/// no longer holds the first of them; `false` once the client is gone.
async fn catch_up(log: &EventLog, last: &mut u64, out: &mpsc::Sender<Item>) -> bool {
    let mut missed = log.since(Some(*last));
    missed.reverse();
    if let Some(first) = missed.first() {
        if first.seq > *last + 1 {
            let gap = Item::Gap {
                after: *last,
                before: first.seq,
            };
            if out.send(gap).await.is_err() {
                return false;
            }
        }
    }
    for record in missed {
        let seq = record.seq;
        if out.send(Item::Entry(record)).await.is_err() {
            return false;
        }
        *last = seq;
    }
    true
}

/// One stream's task: the entries after `after` from the log, then live ones, until the
/// client goes away.
async fn feed(log: Arc<EventLog>, after: Option<u64>, out: mpsc::Sender<Item>) {
    // Subscribed before the log is read: nothing recorded in between is missed.
    let mut live = log.subscribe();
    let (latest, _) = log.bounds();
    let base = log.base();
    let mut last = match after {
        // A cursor from another master's log (the old one's, after an upgrade):
        // everything this one holds is new to the client.
        Some(after) if after < base || after > latest => base,
        Some(after) => after,
        None => latest,
    };
    if !catch_up(&log, &mut last, &out).await {
        return;
    }
    loop {
        let received = tokio::select! {
            () = out.closed() => return,
            received = live.recv() => received,
        };
        match received {
            Ok(record) if record.seq <= last => {}
            Ok(record) if record.seq == last + 1 => {
                last = record.seq;
                if out.send(Item::Entry(record)).await.is_err() {
                    return;
                }
            }
            Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {
                tracing::debug!("an event stream fell behind; catching it up from the log");
                live = live.resubscribe();
                if !catch_up(&log, &mut last, &out).await {
                    return;
                }
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads `count` items off `items`.
    async fn take(items: &mut mpsc::Receiver<Item>, count: usize) -> Vec<Item> {
        let mut taken = Vec::new();
        while taken.len() < count {
            match tokio::time::timeout(Duration::from_secs(5), items.recv()).await {
                Ok(Some(item)) => taken.push(item),
                _ => break,
            }
        }
        taken
    }

    fn seqs(items: &[Item]) -> Vec<u64> {
        items
            .iter()
            .filter_map(|item| match item {
                Item::Entry(record) => Some(record.seq),
                Item::Gap { .. } => None,
            })
            .collect()
    }

    #[tokio::test]
    async fn a_client_that_falls_behind_is_caught_up_from_the_log_without_a_hole() {
        let log = Arc::new(EventLog::with_base(1000, 0));
        let (out, mut items) = mpsc::channel(1);
        tokio::spawn(feed(log.clone(), None, out));
        tokio::task::yield_now().await;
        // Far more than the live channel holds, while the client reads nothing.
        for n in 0..700 {
            log.record("roll", None, format!("step {n}"));
        }
        let got = take(&mut items, 700).await;
        assert_eq!(seqs(&got), (1..=700).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn entries_the_log_dropped_are_announced_as_a_gap() {
        let log = Arc::new(EventLog::with_base(10, 0));
        for n in 0..30 {
            log.record("roll", None, format!("step {n}"));
        }
        let (out, mut items) = mpsc::channel(64);
        tokio::spawn(feed(log.clone(), Some(5), out));
        let got = take(&mut items, 11).await;
        assert_eq!(
            got[0],
            Item::Gap {
                after: 5,
                before: 21
            }
        );
        assert_eq!(seqs(&got), (21..=30).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn a_cursor_from_another_log_replays_everything_kept() {
        let log = Arc::new(EventLog::with_base(10, 1000));
        for n in 0..3 {
            log.record("roll", None, format!("step {n}"));
        }
        for foreign in [999, 9_999] {
            let (out, mut items) = mpsc::channel(64);
            tokio::spawn(feed(log.clone(), Some(foreign), out));
            assert_eq!(seqs(&take(&mut items, 3).await), [1001, 1002, 1003]);
        }
    }
}
