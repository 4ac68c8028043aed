//! WebSockets through rolls, upgrades and stops (`examples/websocket.rs`, a chat, with
//! real tokio-tungstenite clients): every socket gets a close frame before its TCP
//! connection ends (1012 for a restart, 1001 for a stop), the clients reconnect to the
//! new workers and catch up, and the old workers exit as soon as their sockets are
//! closed, well before the drain timeout.

use std::collections::BTreeSet;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use nix::sys::signal::Signal;
use parking_lot::Mutex;
use tokio_tungstenite::tungstenite::Message;
use wix_cluster_suite::{PATIENCE, Program, http_get, is_alive, wait_until};

/// 30 s: the test shows the old workers leave long before it.
const DRAIN_TIMEOUT: &str = "30s";

/// How a connection of a client ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    /// With a close frame from the server, with this code, before the TCP end.
    Closed(u16),
    /// Without a close frame.
    Cut,
}

/// What one client saw.
#[derive(Debug, Default)]
struct Seen {
    /// The worker pid and master epoch of each connection, in order.
    connections: Vec<(u32, u32)>,
    ended: Vec<Ended>,
    /// Every line `(epoch, seq)` received.
    lines: BTreeSet<(u32, u64)>,
    /// Every post the server acknowledged `(epoch, seq)`.
    acked: Vec<(u32, u64)>,
}

/// A chat client that reconnects, resuming from the last line it saw, until `done`;
/// a poster also posts a line every 250 ms.
async fn client(addr: SocketAddr, poster: bool, seen: Arc<Mutex<Seen>>, done: Arc<AtomicBool>) {
    let mut resume: Option<(u32, u64)> = None;
    while !done.load(Ordering::Relaxed) {
        let url = match resume {
            Some((epoch, since)) => format!("ws://{addr}/chat?epoch={epoch}&since={since}"),
            None => format!("ws://{addr}/chat"),
        };
        let Ok((mut socket, _)) = tokio_tungstenite::connect_async(url).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let mut epoch = 0;
        let mut post = tokio::time::interval(Duration::from_millis(250));
        let mut n = 0_u64;
        let ended = loop {
            let message = tokio::select! {
                message = socket.next() => message,
                _ = post.tick(), if poster && epoch != 0 => {
                    n += 1;
                    let _ = socket.send(Message::text(format!("post {n}"))).await;
                    continue;
                }
            };
            match message {
                Some(Ok(Message::Text(text))) => {
                    let words: Vec<&str> = text.split(' ').collect();
                    let number = |at: usize| words.get(at).and_then(|w| w.parse::<u64>().ok());
                    let mut seen = seen.lock();
                    match words.first() {
                        Some(&"hello") => {
                            let (pid, e) = (number(1).unwrap_or(0), number(2).unwrap_or(0));
                            epoch = e as u32;
                            seen.connections.push((pid as u32, epoch));
                        }
                        Some(&"line") => {
                            if let (Some(e), Some(seq)) = (number(1), number(2)) {
                                seen.lines.insert((e as u32, seq));
                                resume = Some((e as u32, seq));
                            }
                        }
                        Some(&"ack") => {
                            if let (Some(e), Some(seq)) = (number(1), number(2)) {
                                seen.acked.push((e as u32, seq));
                            }
                        }
                        _ => {}
                    }
                }
                Some(Ok(Message::Close(frame))) => {
                    // Noted at once (the TCP connection is still open: the frame came
                    // first); tungstenite answers it, and the stream ends after.
                    let code = frame.map_or(0, |frame| u16::from(frame.code));
                    seen.lock().ended.push(Ended::Closed(code));
                    while let Some(Ok(_)) = socket.next().await {}
                    break None;
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => break Some(Ended::Cut),
            }
        };
        if let Some(ended) = ended {
            seen.lock().ended.push(ended);
        }
    }
}

/// `clients` chat clients (every tenth a poster), in a runtime of their own.
struct Clients {
    runtime: tokio::runtime::Runtime,
    seen: Vec<Arc<Mutex<Seen>>>,
    done: Arc<AtomicBool>,
}

impl Clients {
    fn start(addr: SocketAddr, clients: usize) -> Clients {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime for the clients");
        let done = Arc::new(AtomicBool::new(false));
        let seen: Vec<_> = (0..clients)
            .map(|_| Arc::new(Mutex::new(Seen::default())))
            .collect();
        for (i, seen) in seen.iter().enumerate() {
            runtime.spawn(client(addr, i % 10 == 0, seen.clone(), done.clone()));
        }
        Clients {
            runtime,
            seen,
            done,
        }
    }

    /// Waits until every client's latest connection satisfies `check`.
    fn wait_until_connected(&self, what: &str, check: impl Fn(u32, u32) -> bool) {
        let all = wait_until(PATIENCE * 2, || {
            self.seen.iter().all(|seen| {
                let seen = seen.lock();
                seen.connections.len() > seen.ended.len()
                    && seen
                        .connections
                        .last()
                        .is_some_and(|&(pid, e)| check(pid, e))
            })
        });
        let behind = self
            .seen
            .iter()
            .filter(|seen| {
                let seen = seen.lock();
                !seen
                    .connections
                    .last()
                    .is_some_and(|&(pid, e)| check(pid, e))
            })
            .count();
        assert!(
            all,
            "{behind} of {} clients are not {what}",
            self.seen.len()
        );
    }

    /// Waits until every client has seen every line acknowledged in `epoch` so far.
    fn wait_until_caught_up(&self, epoch: u32) {
        let acked = |all: &[Arc<Mutex<Seen>>]| -> BTreeSet<(u32, u64)> {
            all.iter()
                .flat_map(|seen| seen.lock().acked.clone())
                .filter(|(e, _)| *e == epoch)
                .collect()
        };
        let target = acked(&self.seen);
        assert!(
            !target.is_empty(),
            "nothing was acknowledged in epoch {epoch}"
        );
        let caught_up = wait_until(PATIENCE, || {
            self.seen
                .iter()
                .all(|seen| target.is_subset(&seen.lock().lines))
        });
        let missing: Vec<usize> = self
            .seen
            .iter()
            .map(|seen| target.difference(&seen.lock().lines).count())
            .filter(|missing| *missing > 0)
            .collect();
        assert!(
            caught_up,
            "acknowledged lines were lost: {} clients miss some of the {} acknowledged \
             ({missing:?})",
            missing.len(),
            target.len()
        );
    }

    fn stop(self) -> Vec<Seen> {
        self.done.store(true, Ordering::Relaxed);
        self.runtime.shutdown_timeout(Duration::from_secs(1));
        self.seen
            .into_iter()
            .map(|seen| std::mem::take(&mut *seen.lock()))
            .collect()
    }
}

/// Every connection that ended got a close frame with `code` before its TCP end.
fn assert_closed_with(seen: &[Seen], code: u16) {
    for (i, seen) in seen.iter().enumerate() {
        assert!(!seen.ended.is_empty(), "client {i} was never disconnected");
        for ended in &seen.ended {
            assert_eq!(
                *ended,
                Ended::Closed(code),
                "client {i}: a connection ended without close code {code}: {:?}",
                seen.ended
            );
        }
    }
}

/// The `cause` of every `drain` entry of the event log, with its worker's pid.
fn drain_events(program: &Program) -> Vec<(u64, String)> {
    let page = http_get(program.management_addr(), "/events").expect("GET /events");
    let page: serde_json::Value = serde_json::from_str(&page.body).expect("JSON events");
    page["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|entry| entry["kind"] == "drain")
        .map(|entry| {
            (
                entry["worker"]["pid"].as_u64().unwrap_or(0),
                entry["cause"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// The sum of `wix_cluster_worker_open_connections{kind}` over the workers in /metrics.
fn open_connections(program: &Program, kind: &str) -> u64 {
    let Ok(page) = http_get(program.management_addr(), "/metrics") else {
        return 0;
    };
    let needle = format!("kind=\"{kind}\"");
    page.body
        .lines()
        .filter(|line| {
            line.starts_with("wix_cluster_worker_open_connections{") && line.contains(&needle)
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|value| value as u64)
        .sum()
}

fn start(drain_timeout: &str) -> (Program, Vec<u32>, SocketAddr) {
    let program = Program::start(
        "websocket",
        &[("PORT", "0"), ("DRAIN_TIMEOUT", drain_timeout)],
    );
    let workers = program.wait_for_steady_workers(2);
    let addr = program.listening_addr();
    (program, workers, addr)
}

#[test]
fn two_hundred_websockets_through_a_roll_get_1012_reconnect_to_new_workers_and_lose_nothing() {
    let (program, old, addr) = start(DRAIN_TIMEOUT);
    let clients = Clients::start(addr, 200);
    clients.wait_until_connected("connected", |pid, _| old.contains(&pid));
    let epoch = program.pid();
    // Visible per worker: 200 upgraded connections (heartbeats come every second).
    assert!(
        wait_until(PATIENCE, || open_connections(&program, "upgraded") == 200),
        "/metrics shows {} upgraded connections, not 200",
        open_connections(&program, "upgraded")
    );

    program.signal(Signal::SIGHUP);
    program.wait_for_log("rolling restart done");
    clients.wait_until_connected("on a new worker", |pid, _| !old.contains(&pid));
    let rolled = Instant::now();
    for pid in &old {
        assert!(
            wait_until(Duration::from_secs(10), || !is_alive(*pid)),
            "old worker {pid} is still there 10 s after the roll (drain timeout {DRAIN_TIMEOUT})"
        );
    }
    let left_after = rolled.elapsed();
    // Lines posted after the roll reach everyone too.
    std::thread::sleep(Duration::from_secs(1));
    clients.wait_until_caught_up(epoch);
    let seen = clients.stop();
    assert_closed_with(&seen, 1012);
    assert!(
        !program.log().contains("did not stop within"),
        "an old worker was killed at the drain timeout"
    );
    eprintln!("old workers gone {left_after:?} after the roll was done");
    // The event log says how each old worker's drain ended.
    let mut drains = Vec::new();
    wait_until(PATIENCE, || {
        drains = drain_events(&program);
        old.iter()
            .all(|pid| drains.iter().any(|(of, _)| of == &u64::from(*pid)))
    });
    for pid in &old {
        let ended = drains.iter().find(|(of, _)| of == &u64::from(*pid));
        assert!(
            ended.is_some_and(|(_, cause)| cause.contains("every connection closed")),
            "worker {pid}'s drain: {ended:?} (all: {drains:?})"
        );
    }
}

#[test]
fn websockets_through_a_master_upgrade_get_1012_and_reconnect_to_the_new_masters_workers() {
    let (program, old, addr) = start(DRAIN_TIMEOUT);
    let clients = Clients::start(addr, 200);
    clients.wait_until_connected("connected", |pid, _| old.contains(&pid));
    let old_master = program.pid();

    program.signal(Signal::SIGUSR2);
    let new_master = program.new_master_pid();
    clients.wait_until_connected("on the new master's workers", |_, epoch| {
        epoch == new_master
    });
    assert!(
        wait_until(Duration::from_secs(10), || old
            .iter()
            .all(|pid| !is_alive(*pid))),
        "the old workers are still there 10 s after the handover (drain timeout \
         {DRAIN_TIMEOUT})"
    );
    assert!(
        wait_until(Duration::from_secs(10), || !is_alive(old_master)),
        "the old master is still there 10 s after its workers left"
    );
    std::thread::sleep(Duration::from_secs(1));
    clients.wait_until_caught_up(new_master);
    let seen = clients.stop();
    assert_closed_with(&seen, 1012);
}

#[test]
fn websockets_through_a_stop_get_1001_and_the_cluster_exits_well_before_the_drain_timeout() {
    let (mut program, old, addr) = start(DRAIN_TIMEOUT);
    let clients = Clients::start(addr, 200);
    clients.wait_until_connected("connected", |pid, _| old.contains(&pid));

    program.signal(Signal::SIGTERM);
    let status = program.wait_exit(Duration::from_secs(15));
    assert!(
        status.is_some(),
        "the cluster is still there 15 s after SIGTERM (drain timeout {DRAIN_TIMEOUT})"
    );
    assert!(
        wait_until(PATIENCE, || clients
            .seen
            .iter()
            .all(|seen| !seen.lock().ended.is_empty())),
        "some clients never saw their connection end"
    );
    let seen = clients.stop();
    for (i, seen) in seen.iter().enumerate() {
        assert_eq!(
            seen.ended.first(),
            Some(&Ended::Closed(1001)),
            "client {i}: {:?}",
            seen.ended
        );
    }
}

#[test]
fn a_websocket_client_that_ignores_the_close_frame_is_closed_at_the_drain_timeout() {
    let (program, old, addr) = start("3s");
    let mut deaf = wix_cluster_suite::raw_websocket(addr, "/chat");
    deaf.set_read_timeout(Some(PATIENCE)).expect("read timeout");
    // The 101 and the hello.
    let mut got = Vec::new();
    let mut buf = [0_u8; 4096];
    while !String::from_utf8_lossy(&got).contains("hello ") {
        let n = deaf.read(&mut buf).expect("read the handshake answer");
        assert!(n > 0, "closed during the handshake");
        got.extend_from_slice(&buf[..n]);
    }
    assert!(
        String::from_utf8_lossy(&got).starts_with("HTTP/1.1 101"),
        "{got:?}"
    );

    program.signal(Signal::SIGHUP);
    // The close frame: opcode 8, unmasked, code 1012 (0x03f4) first in its payload.
    got.clear();
    let close_at = loop {
        let n = deaf.read(&mut buf).expect("read the close frame");
        assert!(n > 0, "cut without a close frame");
        got.extend_from_slice(&buf[..n]);
        if got
            .windows(4)
            .any(|w| w[0] == 0x88 && w[2..4] == [0x03, 0xf4])
        {
            break Instant::now();
        }
    };
    // It never answers: the server waits for it, then closes at the drain's deadline.
    let eof = loop {
        match deaf.read(&mut buf) {
            Ok(0) | Err(_) => break Instant::now(),
            Ok(_) => {}
        }
    };
    let waited = eof - close_at;
    assert!(
        waited >= Duration::from_secs(1),
        "closed {waited:?} after the close frame: the server did not wait for the client"
    );
    for pid in &old {
        assert!(
            wait_until(PATIENCE, || !is_alive(*pid)),
            "old worker {pid} did not exit"
        );
    }
    assert!(
        !program.log().contains("did not stop within"),
        "the worker was killed at the drain timeout instead of exiting"
    );
    let mut drains = Vec::new();
    assert!(
        wait_until(PATIENCE, || {
            drains = drain_events(&program);
            drains
                .iter()
                .any(|(_, cause)| cause.contains("1 WebSockets closed at the drain's deadline"))
        }),
        "no drain says the deaf socket was closed at its deadline: {drains:?}"
    );
}
