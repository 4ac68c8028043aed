//! A test fixture for the exchange: every kind of message, driven over HTTP.
//!
//! The master side (a plugin) publishes app data `Config { version: 1 }`, answers `Add`
//! and `Slow` requests, logs every `Hello`, and acts on `Ask`s from workers (broadcast a
//! note, send one to a worker, refresh the config, send garbage). Each worker sends a
//! `Hello` at start and records what reaches it. Routes answer `<pid> <result>`:
//! `/notes`, `/others`, `/config`, `/add?a=&b=`, `/slow?ms=`, `/undecodable`,
//! `/ask/broadcast?text=`, `/ask/other?text=`, `/ask/send-to?worker=&text=`,
//! `/ask/refresh`, `/ask/garbage`, `/garbage`.
//!
//! `BLOB_MB=N`: the master also publishes app data `Blob` of N MiB at start;
//! `/blob` answers `<pid> start=<len at app start> now=<len> version=<v> ok=<bytes
//! check>`, `/ask/blob?mb=N` asks the master to publish a new one of N MiB,
//! `/ask/blobs?count=C&mb=N` C new ones back to back.
//!
//! Floods, for the master's bounds: `/ask/flood?mb=N` asks the master to broadcast N
//! messages of 1 MiB (`Flood`, which no worker subscribes to); `/flood-master?count=N&kb=K`
//! sends the master N `Sink` messages of K KiB (its subscriber never reads them);
//! `/names?count=N` reports N custom gauges of distinct names; `/collide` reports
//! gauges named like built-in `/metrics` families; `/hostile-names` records metrics
//! whose names and labels collide once made valid (`a-b` and `a_b`, a histogram's own
//! `le`, a leading `__`, `hostile.family` and `hostile_family`).
//!
//! `FAIL_FROM_GENERATION=N`: a worker of generation N or later fails right after its
//! handshake, before it listens (a successor that never becomes ready).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::Query;
use axum::{Router, routing::get};
use wix_cluster::{AppData, Master, Peer, Plugin, PluginError, WorkerId};

#[wix_cluster::exchange("probe.hello")]
struct Hello {
    pid: u32,
}

#[wix_cluster::exchange("probe.note")]
struct Note {
    text: String,
}

#[wix_cluster::exchange("probe.other")]
struct Other {
    text: String,
}

#[wix_cluster::exchange("probe.config")]
struct Config {
    version: u64,
}

#[wix_cluster::exchange("probe.sum")]
struct Sum {
    value: u64,
}

#[wix_cluster::exchange("probe.add", response = Sum)]
struct Add {
    a: u64,
    b: u64,
}

#[wix_cluster::exchange("probe.slow", response = u64)]
struct Slow {
    ms: u64,
}

#[wix_cluster::exchange("probe.blob")]
struct Blob {
    version: u64,
    /// A string rather than bytes: it is encoded and decoded as one copy, so that the
    /// fixture's cost stays small next to what the exchange does with it.
    bytes: String,
}

/// What a blob repeats: 251 printable bytes (a period prime to the 1 MiB parts, so a
/// part out of place shows).
fn pattern() -> Vec<u8> {
    (0..251u32).map(|i| b' ' + (i % 95) as u8).collect()
}

impl Blob {
    fn new(version: u64, mb: u64) -> Blob {
        let len = (mb << 20) as usize;
        let pattern = pattern();
        let mut bytes = Vec::with_capacity(len + pattern.len());
        while bytes.len() < len {
            bytes.extend_from_slice(&pattern);
        }
        bytes.truncate(len);
        Blob {
            version,
            bytes: String::from_utf8(bytes).unwrap_or_default(),
        }
    }

    /// Whether every byte is where [`Blob::new`] put it.
    fn is_intact(&self) -> bool {
        let pattern = pattern();
        self.bytes
            .as_bytes()
            .chunks(pattern.len())
            .all(|chunk| chunk == &pattern[..chunk.len()])
    }
}

#[wix_cluster::exchange("probe.flood")]
struct Flood {
    text: String,
}

#[wix_cluster::exchange("probe.sink")]
struct Sink {
    text: String,
}

#[wix_cluster::exchange("probe.ask")]
enum Ask {
    Blob(u64),
    Blobs(u64, u64),
    Flood(u64),
    Broadcast(String),
    Other(String),
    SendTo(u32, String),
    Refresh,
    Garbage,
}

/// The master's side of the probe.
#[derive(Default)]
struct ProbeMaster;

impl Plugin for ProbeMaster {
    fn name(&self) -> &str {
        "ProbeMaster"
    }

    async fn on_master(&self, _master: &Master) -> Result<(), PluginError> {
        AppData::publish(&Config { version: 1 })?;
        if let Some(mb) = std::env::var("BLOB_MB").ok().and_then(|mb| mb.parse().ok()) {
            AppData::publish(&Blob::new(1, mb))?;
        }
        Add::handle(|_from, add: Add| async move {
            Sum {
                value: add.a + add.b,
            }
        })?;
        Slow::handle(|_from, slow: Slow| async move {
            tokio::time::sleep(Duration::from_millis(slow.ms)).await;
            slow.ms
        })?;
        // A subscriber that never reads: what workers send it piles up to its budget.
        let sink = Sink::subscribe()?;
        tokio::spawn(async move {
            let _sink = sink;
            std::future::pending::<()>().await
        });
        let mut hellos = Hello::subscribe()?;
        tokio::spawn(async move {
            while let Some((from, hello)) = hellos.recv().await {
                tracing::info!("master got hello from {from:?} pid {}", hello.pid);
            }
        });
        let mut asks = Ask::subscribe()?;
        tokio::spawn(async move {
            let mut version = 1;
            let mut blob_version = 1;
            while let Some((from, ask)) = asks.recv().await {
                let done = match ask {
                    Ask::Flood(mb) => {
                        let text = "f".repeat(1 << 20);
                        let mut sent = Ok(());
                        for _ in 0..mb {
                            sent = sent.and(Flood::broadcast(Flood { text: text.clone() }));
                            tokio::task::yield_now().await;
                        }
                        sent
                    }
                    Ask::Blob(mb) => {
                        blob_version += 1;
                        AppData::publish(&Blob::new(blob_version, mb))
                    }
                    Ask::Blobs(count, mb) => {
                        let mut published = Ok(());
                        for _ in 0..count {
                            blob_version += 1;
                            published =
                                published.and(AppData::publish(&Blob::new(blob_version, mb)));
                        }
                        published
                    }
                    Ask::Broadcast(text) => Note::broadcast(Note { text }),
                    Ask::Other(text) => Other::broadcast(Other { text }),
                    Ask::SendTo(worker, text) => Note::send_to(WorkerId(worker), Note { text }),
                    Ask::Refresh => {
                        version += 1;
                        AppData::publish(&Config { version })
                    }
                    Ask::Garbage => {
                        wix_cluster::__private::exchange::broadcast_raw("probe.note", vec![0xff; 3])
                    }
                };
                match done {
                    Ok(()) => tracing::info!("master did what {from:?} asked"),
                    Err(e) => tracing::error!("master could not do what {from:?} asked: {e}"),
                }
            }
        });
        Ok(())
    }
}

type Seen = Arc<Mutex<Vec<String>>>;

fn record<T: wix_cluster::Exchange>(seen: Seen, text: impl Fn(T) -> String + Send + 'static) {
    tokio::spawn(async move {
        let Ok(mut messages) = wix_cluster::exchange::subscribe::<T>() else {
            return;
        };
        while let Some((_from, message)) = messages.recv().await {
            seen.lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(text(message));
        }
    });
}

#[derive(serde::Deserialize)]
struct AddQuery {
    a: u64,
    b: u64,
}

#[derive(serde::Deserialize)]
struct Millis {
    ms: u64,
}

#[derive(serde::Deserialize)]
struct FloodQuery {
    count: u64,
    kb: u64,
}

#[derive(serde::Deserialize)]
struct Count {
    count: u64,
}

#[derive(serde::Deserialize)]
struct Megabytes {
    mb: u64,
}

#[derive(serde::Deserialize)]
struct Blobs {
    count: u64,
    mb: u64,
}

#[derive(serde::Deserialize)]
struct Text {
    text: String,
}

#[derive(serde::Deserialize)]
struct SendTo {
    worker: u32,
    text: String,
}

#[wix_cluster::main(workers = 2, plugins(ProbeMaster, Respawn, Graceful))]
async fn main(worker: wix_cluster::Worker) -> std::io::Result<()> {
    let fail_from = std::env::var("FAIL_FROM_GENERATION")
        .ok()
        .and_then(|generation| generation.parse::<u32>().ok());
    if fail_from.is_some_and(|generation| worker.generation() >= generation) {
        return Err(std::io::Error::other(
            "FAIL_FROM_GENERATION: failing on purpose",
        ));
    }
    // The app-scoped data is there before the app starts.
    let config_at_start = AppData::<Config>::get()
        .ok()
        .flatten()
        .map_or(0, |c| c.version);
    let blob_at_start = AppData::<Blob>::get()
        .ok()
        .flatten()
        .map_or(0, |blob| blob.bytes.len());
    let pid = worker.pid();
    Hello { pid }.send().map_err(std::io::Error::other)?;
    let notes = Seen::default();
    let others = Seen::default();
    record::<Note>(notes.clone(), |note| note.text);
    record::<Other>(others.clone(), |other| other.text);

    let port = std::env::var("PORT").unwrap_or_else(|_| "8080".to_owned());
    let listener = worker.listen(format!("127.0.0.1:{port}")).await?;
    let reply = move |text: String| format!("{pid} {text}");
    let ask = move |ask: Ask| match ask.send() {
        Ok(()) => reply("asked".into()),
        Err(e) => reply(format!("error: {e}")),
    };
    let app = Router::new()
        .route("/notes", get(move || async move {
            reply(notes.lock().unwrap_or_else(|p| p.into_inner()).join(","))
        }))
        .route("/others", get(move || async move {
            reply(others.lock().unwrap_or_else(|p| p.into_inner()).join(","))
        }))
        .route("/config", get(move || async move {
            let now = AppData::<Config>::get().ok().flatten().map_or(0, |c| c.version);
            reply(format!("start={config_at_start} now={now}"))
        }))
        .route("/add", get(move |Query(q): Query<AddQuery>| async move {
            match Add::request(Add { a: q.a, b: q.b }).await {
                Ok(sum) => reply(sum.value.to_string()),
                Err(e) => reply(format!("error: {e}")),
            }
        }))
        .route("/slow", get(move |Query(q): Query<Millis>| async move {
            match Slow::request(Slow { ms: q.ms }).await {
                Ok(ms) => reply(ms.to_string()),
                Err(e) => reply(format!("error: {e}")),
            }
        }))
        .route("/undecodable", get(move || async move {
            reply(wix_cluster::exchange::undecodable_messages().to_string())
        }))
        .route("/ask/broadcast", get(move |Query(q): Query<Text>| async move { ask(Ask::Broadcast(q.text)) }))
        .route("/ask/other", get(move |Query(q): Query<Text>| async move { ask(Ask::Other(q.text)) }))
        .route("/ask/send-to", get(move |Query(q): Query<SendTo>| async move {
            ask(Ask::SendTo(q.worker, q.text))
        }))
        .route("/ask/refresh", get(move || async move { ask(Ask::Refresh) }))
        .route("/blob", get(move || async move {
            let blob = AppData::<Blob>::get().ok().flatten();
            let (len, version, ok) = blob
                .map_or((0, 0, false), |b| (b.bytes.len(), b.version, b.is_intact()));
            reply(format!("start={blob_at_start} now={len} version={version} ok={ok}"))
        }))
        .route("/ask/flood", get(move |Query(q): Query<Megabytes>| async move { ask(Ask::Flood(q.mb)) }))
        .route("/flood-master", get(move |Query(q): Query<FloodQuery>| async move {
            let text = "s".repeat((q.kb << 10) as usize);
            let (mut sent, mut failed) = (0, 0);
            for _ in 0..q.count {
                match (Sink { text: text.clone() }).send() {
                    Ok(()) => sent += 1,
                    Err(_) => failed += 1,
                }
                tokio::task::yield_now().await;
            }
            reply(format!("sent={sent} failed={failed}"))
        }))
        .route("/names", get(move |Query(q): Query<Count>| async move {
            for i in 0..q.count {
                wix_cluster::metrics::gauge(&format!("flood.name.{i}"), i as f64);
            }
            reply(format!("named {}", q.count))
        }))
        .route("/collide", get(move || async move {
            wix_cluster::metrics::gauge("wix_cluster.workers.desired", 99.0);
            wix_cluster::metrics::gauge("process_resident_memory_bytes", 1.0);
            wix_cluster::metrics::counter("wix_cluster.workers.forked", 5);
            reply("collided".into())
        }))
        .route("/hostile-names", get(move || async move {
            // Names that only the exposition's rules keep valid.
            metrics::counter!("hostile.labels", "a-b" => "1", "a_b" => "2").increment(1);
            metrics::histogram!("hostile_latency", "le" => "mine").record(0.2);
            metrics::gauge!("__reserved_level").set(1.0);
            metrics::counter!("hostile.family").increment(1);
            metrics::counter!("hostile_family").increment(2);
            reply("named".into())
        }))
        .route("/ask/blob", get(move |Query(q): Query<Megabytes>| async move { ask(Ask::Blob(q.mb)) }))
        .route("/ask/blobs", get(move |Query(q): Query<Blobs>| async move { ask(Ask::Blobs(q.count, q.mb)) }))
        .route("/ask/garbage", get(move || async move { ask(Ask::Garbage) }))
        .route("/garbage", get(move || async move {
            // A payload that is no Hello: the master must drop it and carry on.
            match wix_cluster::__private::exchange::send_raw("probe.hello", vec![0xff; 3]) {
                Ok(()) => reply("sent".into()),
                Err(e) => reply(format!("error: {e}")),
            }
        }));
    let _ = Peer::Master;
    wix_cluster::http::serve(listener, app, &worker).await
}
