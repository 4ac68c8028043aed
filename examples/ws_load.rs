//! A load client for the chat of `examples/websocket.rs` through a rolling restart
//! (bench/run's `websocket` section; its Node peer speaks the same protocol).
//!
//!     ws_load 127.0.0.1:8080 <master pid> [--sockets 1000] [--posters 100]
//!             [--interval-ms 1000] [--before 3] [--after 3] [--timeout 60]
//!
//! It opens `--sockets` WebSockets to `/chat` (64 handshakes at a time), waits for
//! every `hello <pid> <epoch>`, then `--posters` of them post a line every
//! `--interval-ms` (spread evenly), and `--before` seconds later it sends SIGHUP to the
//! master. A socket closed by the server (the close frame noted when it arrives) or cut
//! reconnects at once with `/chat?epoch=E&since=N` (the last line it saw). It measures:
//!
//! - per reconnection, the time from the close frame (or the cut) to the next `hello`;
//! - the roll: SIGHUP to the last of the old workers (the pids of the first `hello`s)
//!   gone from `/proc` (or a zombie), and to every client connected to a new worker;
//! - `--after` seconds after that the posting stops, and once every post is answered
//!   the messages lost: every line some client's post was acknowledged for (`ack E N`)
//!   that some client never saw (`line E N ..`), after the reconnections' catch-up.
//!
//! The soft limit on open files is raised to the hard one first. The figures are
//! printed as one JSON object on stdout; progress goes to stderr.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use parking_lot::Mutex;
use tokio_tungstenite::tungstenite::Message;

/// What the command line asks for.
struct Settings {
    addr: String,
    master: i32,
    sockets: usize,
    posters: usize,
    interval: Duration,
    before: Duration,
    after: Duration,
    timeout: Duration,
}

impl Settings {
    fn parse() -> Result<Settings, String> {
        let mut args = std::env::args().skip(1);
        let usage = "usage: ws_load ADDR MASTER_PID [--sockets N] [--posters N] [--interval-ms MS] \
                     [--before S] [--after S] [--timeout S]";
        let addr = args.next().ok_or(usage)?;
        let master = args.next().and_then(|pid| pid.parse().ok()).ok_or(usage)?;
        let mut settings = Settings {
            addr,
            master,
            sockets: 1000,
            posters: 100,
            interval: Duration::from_millis(1000),
            before: Duration::from_secs(3),
            after: Duration::from_secs(3),
            timeout: Duration::from_secs(60),
        };
        while let Some(name) = args.next() {
            let value: f64 = args
                .next()
                .and_then(|value| value.parse().ok())
                .filter(|value: &f64| value.is_finite() && *value >= 0.0)
                .ok_or_else(|| format!("{name} needs a number; {usage}"))?;
            match name.as_str() {
                "--sockets" => settings.sockets = value as usize,
                "--posters" => settings.posters = value as usize,
                "--interval-ms" => settings.interval = Duration::from_secs_f64(value / 1000.0),
                "--before" => settings.before = Duration::from_secs_f64(value),
                "--after" => settings.after = Duration::from_secs_f64(value),
                "--timeout" => settings.timeout = Duration::from_secs_f64(value),
                _ => return Err(format!("unknown option {name}; {usage}")),
            }
        }
        if settings.posters > settings.sockets || settings.interval.is_zero() {
            return Err(format!(
                "--posters at most --sockets, --interval-ms more than 0; {usage}"
            ));
        }
        Ok(settings)
    }
}

/// What one client saw, shared with the coordinator.
#[derive(Default)]
struct Seen {
    /// The worker pid of the connection open now (its `hello` came), 0 if none.
    pid: u32,
    /// The epoch of the first `hello`: lines of another epoch are counted apart.
    epoch: u32,
    /// `hello`s received.
    hellos: usize,
    /// The server's close frames, by code.
    closed: Vec<u16>,
    /// Connections that ended without a close frame.
    cut: usize,
    /// Close frame (or cut) -> the next `hello`, in ms.
    reconnect_ms: Vec<f64>,
    /// `seen[seq]`: the line `seq` of `epoch` arrived.
    seen: Vec<bool>,
    /// Lines of another epoch.
    other_epoch: usize,
    /// The seqs of this client's posts that were acknowledged.
    acked: Vec<u64>,
    /// Posts sent.
    posted: u64,
}

impl Seen {
    fn saw(&self, seq: u64) -> bool {
        usize::try_from(seq)
            .ok()
            .and_then(|seq| self.seen.get(seq))
            .is_some_and(|seen| *seen)
    }
}

/// What every client shares.
struct Shared {
    addr: String,
    /// The posters post while this is set.
    posting: AtomicBool,
    /// The clients stop reconnecting once this is set.
    done: AtomicBool,
    /// The first connections wait for a permit (64 handshakes at a time).
    first: tokio::sync::Semaphore,
    /// Handshakes that failed (refused, reset, a non-101 answer).
    failed_connects: AtomicU64,
    /// Messages received, every kind.
    received: AtomicU64,
}

/// One chat client: reconnects, resuming from the last line it saw, until `done`.
async fn client(
    shared: Arc<Shared>,
    seen: Arc<Mutex<Seen>>,
    post_every: Option<(Duration, Duration)>,
) {
    let mut resume: Option<(u32, u64)> = None;
    // When the last connection ended (its close frame, or the cut).
    let mut ended_at: Option<Instant> = None;
    let mut permit = shared.first.acquire().await.ok();
    let mut n = 0_u64;
    while !shared.done.load(Ordering::Relaxed) {
        let url = match resume {
            Some((epoch, since)) => {
                format!("ws://{}/chat?epoch={epoch}&since={since}", shared.addr)
            }
            None => format!("ws://{}/chat", shared.addr),
        };
        let connected = tokio::time::timeout(
            Duration::from_secs(10),
            tokio_tungstenite::connect_async(url),
        )
        .await;
        let Ok(Ok((mut socket, _))) = connected else {
            shared.failed_connects.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let mut hello = false;
        let mut post = post_every.map(|(every, offset)| {
            let mut post = tokio::time::interval_at(tokio::time::Instant::now() + offset, every);
            post.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            post
        });
        loop {
            let message = tokio::select! {
                message = socket.next() => message,
                _ = async {
                    match post.as_mut() {
                        Some(post) => { post.tick().await; }
                        None => std::future::pending::<()>().await,
                    }
                }, if hello => {
                    if shared.posting.load(Ordering::Relaxed) {
                        n += 1;
                        if socket.send(Message::text(format!("post {n}"))).await.is_ok() {
                            seen.lock().posted += 1;
                        }
                    }
                    continue;
                }
            };
            match message {
                Some(Ok(Message::Text(text))) => {
                    shared.received.fetch_add(1, Ordering::Relaxed);
                    let mut words = text.split(' ');
                    let kind = words.next();
                    let a = words.next().and_then(|w| w.parse::<u64>().ok());
                    let b = words.next().and_then(|w| w.parse::<u64>().ok());
                    let mut seen = seen.lock();
                    match (kind, a, b) {
                        (Some("hello"), Some(pid), Some(epoch)) => {
                            let (pid, epoch) = (pid as u32, epoch as u32);
                            seen.pid = pid;
                            seen.hellos += 1;
                            if seen.epoch == 0 {
                                seen.epoch = epoch;
                            }
                            if let Some(at) = ended_at.take() {
                                seen.reconnect_ms.push(at.elapsed().as_secs_f64() * 1000.0);
                            }
                            hello = true;
                            permit = None;
                        }
                        (Some("line"), Some(epoch), Some(seq)) => {
                            if epoch as u32 == seen.epoch {
                                let at = usize::try_from(seq).unwrap_or(usize::MAX);
                                if at < 100_000_000 {
                                    if seen.seen.len() <= at {
                                        seen.seen.resize(at + 1, false);
                                    }
                                    seen.seen[at] = true;
                                }
                            } else {
                                seen.other_epoch += 1;
                            }
                            resume = Some((epoch as u32, seq));
                        }
                        (Some("ack"), Some(epoch), Some(seq)) if epoch as u32 == seen.epoch => {
                            seen.acked.push(seq);
                        }
                        _ => {}
                    }
                }
                Some(Ok(Message::Close(frame))) => {
                    // Noted when it arrives; tungstenite answers it, the stream ends after.
                    ended_at = Some(Instant::now());
                    let code = frame.map_or(0, |frame| u16::from(frame.code));
                    {
                        let mut seen = seen.lock();
                        seen.closed.push(code);
                        seen.pid = 0;
                    }
                    while let Some(Ok(_)) = socket.next().await {}
                    break;
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => {
                    ended_at = Some(Instant::now());
                    let mut seen = seen.lock();
                    seen.cut += 1;
                    seen.pid = 0;
                    break;
                }
            }
        }
        drop(permit.take());
    }
}

/// Whether `pid` has exited (gone from `/proc`, or a zombie its parent has not reaped).
fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => true,
    }
}

/// The `q`-quantile (0..=1) of sorted `values`, nearest rank; NaN if none.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Rounded to a microsecond, NaN as null.
fn ms(value: f64) -> serde_json::Value {
    if value.is_finite() {
        serde_json::json!((value * 1000.0).round() / 1000.0)
    } else {
        serde_json::Value::Null
    }
}

/// Waits until `check` holds (polled every millisecond) or `timeout` passes: the time
/// it took, or None.
async fn until(timeout: Duration, mut check: impl FnMut() -> bool) -> Option<Duration> {
    let began = Instant::now();
    loop {
        if check() {
            return Some(began.elapsed());
        }
        if began.elapsed() >= timeout {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

fn raise_open_files() -> Result<u64, String> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(|e| e.to_string())?;
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).map_err(|e| e.to_string())?;
    Ok(hard)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let settings = Settings::parse()?;
    let open_files = raise_open_files()?;
    if (open_files as usize) < settings.sockets + 64 {
        return Err(format!(
            "{} sockets need more descriptors than the hard limit, {open_files}",
            settings.sockets
        )
        .into());
    }
    let shared = Arc::new(Shared {
        addr: settings.addr.clone(),
        posting: AtomicBool::new(false),
        done: AtomicBool::new(false),
        first: tokio::sync::Semaphore::new(64),
        failed_connects: AtomicU64::new(0),
        received: AtomicU64::new(0),
    });
    let clients: Vec<Arc<Mutex<Seen>>> = (0..settings.sockets)
        .map(|_| Arc::new(Mutex::new(Seen::default())))
        .collect();
    // Posters spread across the clients and across the interval.
    let step = settings.sockets / settings.posters.max(1);
    let mut posters = 0;
    let began = Instant::now();
    for (i, seen) in clients.iter().enumerate() {
        let poster = settings.posters > 0 && i % step == 0 && posters < settings.posters;
        let post_every = poster.then(|| {
            posters += 1;
            let offset = settings
                .interval
                .mul_f64(posters as f64 / settings.posters as f64);
            (settings.interval, offset)
        });
        tokio::spawn(client(shared.clone(), seen.clone(), post_every));
    }

    // 1. Every socket open, its hello in.
    let all_connected = || clients.iter().all(|seen| seen.lock().pid != 0);
    until(settings.timeout, all_connected)
        .await
        .ok_or("not every socket connected in time")?;
    let connect_ms = began.elapsed().as_secs_f64() * 1000.0;
    let old: BTreeSet<u32> = clients.iter().map(|seen| seen.lock().pid).collect();
    let epoch = clients.first().map_or(0, |seen| seen.lock().epoch);
    eprintln!(
        "ws_load: {} sockets open in {connect_ms:.0} ms, on workers {old:?}; {posters} posters",
        clients.len()
    );

    // 2. Posting, then the SIGHUP.
    shared.posting.store(true, Ordering::Relaxed);
    tokio::time::sleep(settings.before).await;
    let received_before = shared.received.load(Ordering::Relaxed);
    let sighup = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(settings.master),
        nix::sys::signal::Signal::SIGHUP,
    )?;

    // 3. The roll: each old worker gone, every client on a new one.
    let mut gone_ms: Vec<(u32, f64)> = Vec::new();
    let mut reconnected_ms = None;
    let roll = until(settings.timeout, || {
        for &pid in &old {
            if !gone_ms.iter().any(|(p, _)| *p == pid) && gone(pid) {
                gone_ms.push((pid, sighup.elapsed().as_secs_f64() * 1000.0));
            }
        }
        if reconnected_ms.is_none()
            && clients.iter().all(|seen| {
                let pid = seen.lock().pid;
                pid != 0 && !old.contains(&pid)
            })
        {
            reconnected_ms = Some(sighup.elapsed().as_secs_f64() * 1000.0);
        }
        gone_ms.len() == old.len() && reconnected_ms.is_some()
    })
    .await;
    let roll_ms = gone_ms.iter().map(|(_, at)| *at).fold(f64::NAN, f64::max);
    eprintln!(
        "ws_load: old workers gone {gone_ms:?} ms after SIGHUP, every client on a new worker \
         {reconnected_ms:?} ms after it{}",
        if roll.is_none() { " (timed out)" } else { "" }
    );
    let during_roll = sighup.elapsed();
    let received_roll = shared.received.load(Ordering::Relaxed) - received_before;

    // 4. More posting, then none; every post answered, every client caught up.
    tokio::time::sleep(settings.after).await;
    shared.posting.store(false, Ordering::Relaxed);
    let posting_ended = sighup.elapsed();
    let answered = || {
        let (posted, acked) = clients.iter().fold((0, 0), |(p, a), seen| {
            let seen = seen.lock();
            (p + seen.posted, a + seen.acked.len() as u64)
        });
        posted == acked
    };
    // A post whose socket closed before its ack is never answered: give up after 5 s.
    let all_answered = until(Duration::from_secs(5), answered).await.is_some();
    let acked: BTreeSet<u64> = clients
        .iter()
        .flat_map(|seen| seen.lock().acked.clone())
        .collect();
    let caught_up = until(Duration::from_secs(10), || {
        clients
            .iter()
            .all(|seen| acked.iter().all(|&seq| seen.lock().saw(seq)))
    })
    .await;
    shared.done.store(true, Ordering::Relaxed);

    // 5. The figures.
    let lost: BTreeSet<u64> = acked
        .iter()
        .copied()
        .filter(|&seq| clients.iter().any(|seen| !seen.lock().saw(seq)))
        .collect();
    let missing_pairs: usize = clients
        .iter()
        .map(|seen| {
            let seen = seen.lock();
            acked.iter().filter(|&&seq| !seen.saw(seq)).count()
        })
        .sum();
    let mut reconnect: Vec<f64> = clients
        .iter()
        .flat_map(|seen| seen.lock().reconnect_ms.clone())
        .collect();
    reconnect.sort_by(f64::total_cmp);
    let mut codes = std::collections::BTreeMap::<u16, usize>::new();
    let (mut cut, mut hellos, mut posted, mut other_epoch, mut not_moved) = (0, 0, 0, 0, 0);
    for seen in &clients {
        let seen = seen.lock();
        for code in &seen.closed {
            *codes.entry(*code).or_default() += 1;
        }
        cut += seen.cut;
        hellos += seen.hellos;
        posted += seen.posted;
        other_epoch += seen.other_epoch;
        not_moved += usize::from(seen.pid == 0 || old.contains(&seen.pid));
    }
    let report = serde_json::json!({
        "sockets": clients.len(),
        "posters": posters,
        "interval_ms": settings.interval.as_secs_f64() * 1000.0,
        "epoch": epoch,
        "connect_ms": ms(connect_ms),
        "old_workers": old.len(),
        "roll_ms": ms(roll_ms),
        "roll_timed_out": roll.is_none(),
        "gone_ms": gone_ms.iter().map(|(_, at)| ms(*at)).collect::<Vec<_>>(),
        "reconnected_ms": ms(reconnected_ms.unwrap_or(f64::NAN)),
        "reconnects": reconnect.len(),
        "reconnect_p50_ms": ms(quantile(&reconnect, 0.5)),
        "reconnect_p99_ms": ms(quantile(&reconnect, 0.99)),
        "reconnect_max_ms": ms(quantile(&reconnect, 1.0)),
        "close_codes": codes.iter().map(|(code, n)| (code.to_string(), *n)).collect::<std::collections::BTreeMap<_, _>>(),
        "cut": cut,
        "hellos": hellos,
        "failed_connects": shared.failed_connects.load(Ordering::Relaxed),
        "clients_not_moved": not_moved,
        "posted": posted,
        "acked": acked.len(),
        "all_answered": all_answered,
        "lost": lost.len(),
        "missing_pairs": missing_pairs,
        "caught_up_ms": ms(caught_up.map_or(f64::NAN, |took| took.as_secs_f64() * 1000.0)),
        "other_epoch_lines": other_epoch,
        "received": shared.received.load(Ordering::Relaxed),
        "received_per_s_during_roll": ms(received_roll as f64 / during_roll.as_secs_f64()),
        "posting_s": ms((settings.before + posting_ended).as_secs_f64()),
    });
    println!("{report}");
    Ok(())
}
