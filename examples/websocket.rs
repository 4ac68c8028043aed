//! A small broadcast chat over WebSockets that survives rolls, upgrades and stops.
//!
//!     cargo run --example websocket      # then connect to ws://localhost:8080/chat
//!
//! Every line a client sends is posted to the master (an exchange request), which
//! numbers it, keeps the last 10,000 and broadcasts it to every worker, whose sockets
//! pass it on; the sender gets `ack <epoch> <seq>` once the master has it, and every
//! client `line <epoch> <seq> <text>`. The epoch is the master's pid: sequence numbers
//! restart with a new master (an upgrade).
//!
//! When its worker drains, each socket is closed by `wix_cluster::websocket::Closing`
//! with close code 1012 (Service Restart: a roll, an upgrade) or 1001 (Going Away: the
//! cluster stops). A client reconnects with `/chat?epoch=E&since=N` (the last line it
//! saw) and first gets the lines it missed, so nothing acknowledged is lost.
//!
//! The first message of a socket is `hello <worker pid> <epoch>`. `PORT` (default 8080);
//! port 0 picks a free one (the master logs it). `DRAIN_TIMEOUT` (default 30 s) is the
//! `Graceful` plugin's timeout.

use std::collections::VecDeque;
use std::sync::Arc;

use axum::Router;
use axum::extract::Query;
use axum::extract::ws::{Message, WebSocketUpgrade};
use axum::routing::get;
use parking_lot::Mutex;
use wix_cluster::websocket::Closing;
use wix_cluster::{Master, Plugin, PluginError};

/// How many lines the master keeps for clients that reconnect.
const HISTORY: usize = 10_000;

/// A line a client posts; the master answers with its place.
#[wix_cluster::exchange("chat.post", response = Posted)]
struct Post {
    text: String,
}

/// Where the master put a posted line.
#[wix_cluster::exchange("chat.posted")]
struct Posted {
    epoch: u32,
    seq: u64,
}

/// A line, broadcast by the master to every worker.
#[wix_cluster::exchange("chat.line")]
#[derive(Clone)]
struct Line {
    epoch: u32,
    seq: u64,
    text: String,
}

/// The lines after `since`, asked by a worker for a client that reconnects.
#[wix_cluster::exchange("chat.history", response = History)]
struct Since {
    since: u64,
}

/// The master's answer to [`Since`]: its epoch and the lines it still has after it.
#[wix_cluster::exchange("chat.lines")]
struct History {
    epoch: u32,
    lines: Vec<(u64, String)>,
}

/// The master side: numbers, keeps and broadcasts the lines.
#[derive(Default)]
struct ChatRoom;

impl Plugin for ChatRoom {
    fn name(&self) -> &str {
        "ChatRoom"
    }

    async fn on_master(&self, _master: &Master) -> Result<(), PluginError> {
        let epoch = std::process::id();
        let kept = Arc::new(Mutex::new((0_u64, VecDeque::<(u64, String)>::new())));
        let room = kept.clone();
        Post::handle(move |_from, post: Post| {
            let room = room.clone();
            async move {
                let line = {
                    let mut room = room.lock();
                    room.0 += 1;
                    let seq = room.0;
                    if room.1.len() == HISTORY {
                        room.1.pop_front();
                    }
                    room.1.push_back((seq, post.text.clone()));
                    Line {
                        epoch,
                        seq,
                        text: post.text,
                    }
                };
                let seq = line.seq;
                if let Err(e) = Line::broadcast(line) {
                    tracing::warn!("chat line {seq} did not reach every worker: {e}");
                }
                Posted { epoch, seq }
            }
        })?;
        Since::handle(move |_from, asked: Since| {
            let kept = kept.clone();
            async move {
                let room = kept.lock();
                let lines = room
                    .1
                    .iter()
                    .filter(|(seq, _)| *seq > asked.since)
                    .cloned()
                    .collect();
                History { epoch, lines }
            }
        })?;
        Ok(())
    }
}

/// Where a reconnecting client left off.
#[derive(serde::Deserialize)]
struct Resume {
    epoch: Option<u32>,
    since: Option<u64>,
}

/// `DRAIN_TIMEOUT` (default 30 s): how long a drain may take.
fn drain_timeout() -> std::time::Duration {
    std::env::var("DRAIN_TIMEOUT")
        .ok()
        .and_then(|timeout| humantime::parse_duration(&timeout).ok())
        .unwrap_or(std::time::Duration::from_secs(30))
}

#[wix_cluster::main(
    workers = 2,
    plugins(ChatRoom, Respawn, Graceful(timeout = drain_timeout()))
)]
async fn main(worker: wix_cluster::Worker) -> std::io::Result<()> {
    let port: u16 = match std::env::var("PORT") {
        Ok(port) => port.parse().map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("PORT={port:?} is not a port number"),
            )
        })?,
        Err(_) => 8080,
    };
    let listener = worker.listen(("127.0.0.1", port)).await?;

    // Every line the master broadcasts, for every socket of this worker.
    let (lines, _) = tokio::sync::broadcast::channel::<Line>(1024);
    let mut from_master = Line::subscribe().map_err(std::io::Error::other)?;
    let relay = lines.clone();
    tokio::spawn(async move {
        while let Some((_, line)) = from_master.recv().await {
            let _ = relay.send(line);
        }
    });

    let app_worker = worker.clone();
    let app = Router::new().route(
        "/chat",
        get(move |ws: WebSocketUpgrade, Query(resume): Query<Resume>| {
            let worker = app_worker.clone();
            let lines = lines.subscribe();
            async move {
                ws.on_upgrade(move |socket| async move {
                    let socket = Closing::new(socket, &worker);
                    if let Err(e) = chat(socket, lines, resume, worker.pid()).await {
                        tracing::debug!("a chat socket ended: {e}");
                    }
                })
            }
        }),
    );
    wix_cluster::http::serve(listener, app, &worker).await
}

/// One client: the lines it missed, then every new line, and its own posts.
async fn chat(
    mut socket: Closing,
    mut lines: tokio::sync::broadcast::Receiver<Line>,
    resume: Resume,
    pid: u32,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    // Subscribed (above) before the history is read: nothing falls in between.
    let mut last = resume.since.unwrap_or(0);
    let mut missed = Since::request(Since { since: last }).await?;
    let epoch = missed.epoch;
    if resume.epoch.is_some_and(|known| known != epoch) {
        // A client of an older master: this one's whole history.
        last = 0;
        missed = Since::request(Since { since: 0 }).await?;
    }
    socket
        .send(Message::text(format!("hello {pid} {epoch}")))
        .await?;
    for (seq, text) in missed.lines {
        if seq > last {
            socket
                .send(Message::text(format!("line {epoch} {seq} {text}")))
                .await?;
            last = seq;
        }
    }
    loop {
        tokio::select! {
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    let posted = Post::request(Post { text: text.to_string() }).await?;
                    socket
                        .send(Message::text(format!("ack {} {}", posted.epoch, posted.seq)))
                        .await?;
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.into()),
                None => return Ok(()),
            },
            line = lines.recv() => match line {
                // Once the close frame is on its way, nothing more is sent: `recv`
                // finishes the close.
                Ok(_) if socket.is_closing() => {}
                Ok(line) if line.epoch == epoch && line.seq > last => {
                    last = line.seq;
                    let text = format!("line {} {} {}", line.epoch, line.seq, line.text);
                    socket.send(Message::text(text)).await?;
                }
                Ok(_) => {}
                // Too slow a client: it reconnects and catches up from the history.
                Err(e) => return Err(e.into()),
            },
        }
    }
}
