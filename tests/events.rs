//! The master's event log through the management app: `GET /events` names the cause of
//! a kill -9, a panic, a stall and a rolling restart; `GET /events/stream` delivers a
//! new entry as it is recorded, resumes after `Last-Event-ID`, outlives the idle timeout
//! and is bounded, and closes the streams of clients that stop reading; `?since=` and
//! newest-first order; the log is bounded at its capacity.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::signal::Signal;
use serde_json::Value;
use wix_cluster_suite::{PATIENCE, Program, http_get, http_request, send_signal, wait_until};

/// The whole `GET /events[query]` answer.
fn events_page(addr: SocketAddr, query: &str) -> Value {
    let response = http_get(addr, &format!("/events{query}")).expect("GET /events");
    assert_eq!(response.status, 200, "{response:?}");
    serde_json::from_str(&response.body).expect("JSON")
}

/// The entries of `GET /events`, newest first.
fn events(addr: SocketAddr) -> Vec<Value> {
    events_page(addr, "")["events"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Waits for an entry that `matches`, and returns it.
fn wait_for_event(program: &Program, what: &str, matches: impl Fn(&Value) -> bool) -> Value {
    let addr = program.management_addr();
    let mut seen = Vec::new();
    let mut found = None;
    wait_until(PATIENCE, || {
        seen = events(addr);
        found = seen.iter().find(|e| matches(e)).cloned();
        found.is_some()
    });
    found.unwrap_or_else(|| panic!("no {what} in the event log: {:#?}", seen))
}

fn kind(event: &Value) -> &str {
    event["kind"].as_str().unwrap_or_default()
}

fn cause(event: &Value) -> &str {
    event["cause"].as_str().unwrap_or_default()
}

fn pid(event: &Value) -> Option<u32> {
    event["worker"]["pid"].as_u64().map(|pid| pid as u32)
}

fn flaky(env: &[(&str, &str)]) -> Program {
    let mut all = vec![("PORT", "0")];
    all.extend_from_slice(env);
    let program = Program::start("flaky", &all);
    program.wait_for_200(program.management_addr(), "/health/ready");
    program
}

#[test]
fn a_kill_9_is_logged_as_a_sigkill_the_master_did_not_send() {
    let program = flaky(&[]);
    let victim = program.wait_for_workers(2)[0];
    send_signal(victim, Signal::SIGKILL);
    let exit = wait_for_event(&program, "exit of the killed worker", |e| {
        kind(e) == "exit" && pid(e) == Some(victim)
    });
    let cause = cause(&exit);
    assert!(cause.contains("SIGKILL"), "{cause}");
    assert!(cause.contains("not sent by the master"), "{cause}");
    assert!(cause.contains("OOM killer or an operator"), "{cause}");
    assert!(exit["worker"]["id"].as_u64().is_some(), "{exit}");
    assert!(exit["time"].as_f64().is_some(), "{exit}");
}

#[test]
fn a_panic_is_logged_with_its_message_and_location() {
    let program = flaky(&[]);
    program.wait_for_workers(2);
    let _ = http_get(program.listening_addr(), "/die");
    let line = include_str!("../examples/flaky.rs")
        .lines()
        .position(|line| line.contains("panic!(\"asked to die\")"))
        .expect("the panic in flaky.rs")
        + 1;
    let at = format!("examples/flaky.rs:{line}");
    let failing = wait_for_event(&program, "the panic", |e| kind(e) == "failing");
    let cause = cause(&failing);
    assert!(cause.contains("asked to die"), "{cause}");
    assert!(cause.contains(&at), "{cause} lacks {at}");
    // Its exit says what it said going down.
    let panicked = pid(&failing);
    let exit = wait_for_event(&program, "the panicked worker's exit", |e| {
        kind(e) == "exit" && pid(e) == panicked
    });
    assert!(cause_of(&exit).contains("asked to die"), "{exit}");
}

fn cause_of(event: &Value) -> String {
    cause(event).to_owned()
}

#[test]
fn a_stall_is_logged_with_how_long_the_worker_was_silent() {
    let program = Program::start_fixture("runaway", &[("PORT", "0"), ("STALL_TIMEOUT_MS", "2000")]);
    let addr = program.listening_addr();
    program.wait_for_workers(2);
    std::thread::spawn(move || http_get(addr, "/block?ms=600000"));
    let stalled = wait_for_event(&program, "the stall", |e| kind(e) == "stalled");
    let cause = cause_of(&stalled);
    // "stalled: no heartbeat from pid N for 2.1s (timeout 2s); ..."
    let silent: f64 = cause
        .split(" for ")
        .nth(1)
        .and_then(|rest| rest.split('s').next())
        .and_then(|seconds| seconds.parse().ok())
        .unwrap_or_else(|| panic!("no silence in {cause:?}"));
    assert!(silent >= 2.0, "{cause}");
    assert!(cause.contains("no heartbeat"), "{cause}");
    let exit = wait_for_event(&program, "the stalled worker's exit", |e| {
        kind(e) == "exit" && pid(e) == pid(&stalled)
    });
    let exit = cause_of(&exit);
    assert!(exit.contains("sent by the master"), "{exit}");
    assert!(!exit.contains("not sent by the master"), "{exit}");
}

#[test]
fn a_rolling_restart_logs_its_steps() {
    let program = flaky(&[]);
    program.wait_for_workers(2);
    program.signal(Signal::SIGHUP);
    wait_for_event(&program, "the roll's end", |e| {
        kind(e) == "roll" && cause(e).starts_with("rolling restart finished")
    });
    let steps: Vec<String> = events(program.management_addr())
        .iter()
        .filter(|e| kind(e) == "roll")
        .map(cause_of)
        .rev()
        .collect();
    assert_eq!(steps.len(), 4, "{steps:#?}");
    assert_eq!(steps[0], "rolling restart started (2 workers)");
    assert!(steps[1].ends_with("(1/2)"), "{steps:#?}");
    assert!(steps[1].contains("replaced by pid"), "{steps:#?}");
    assert!(steps[2].ends_with("(2/2)"), "{steps:#?}");
    assert_eq!(
        steps[3],
        "rolling restart finished: 2 of 2 workers replaced"
    );
    let roll = events(program.management_addr())
        .into_iter()
        .find(|e| kind(e) == "roll")
        .expect("a roll step");
    assert!(roll["worker"].is_null(), "{roll}");
}

#[test]
fn since_gives_the_later_entries_newest_first() {
    let program = flaky(&[]);
    let addr = program.management_addr();
    // Two workers: fork, online, listening each at least.
    wait_until(PATIENCE, || events(addr).len() >= 6);
    let page = events_page(addr, "");
    let seqs: Vec<u64> = page["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["seq"].as_u64().expect("a seq"))
        .collect();
    assert!(
        seqs.windows(2).all(|w| w[0] > w[1]),
        "not newest first: {seqs:?}"
    );
    let latest = page["latest"].as_u64().expect("latest");
    assert!(latest >= seqs[0], "{page}");
    assert_eq!(page["oldest"].as_u64(), seqs.last().copied(), "{page}");
    assert_eq!(page["capacity"], 500, "{page}");

    let later = events_page(addr, &format!("?since={}", latest - 2));
    let later: Vec<u64> = later["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["seq"].as_u64().expect("a seq"))
        .collect();
    // More may have come meanwhile, newest first; the two after the cursor are there.
    assert!(later.ends_with(&[latest, latest - 1]), "{later:?}");
    assert!(later.iter().all(|seq| *seq > latest - 2), "{later:?}");
    let none = events_page(addr, &format!("?since={}", u64::MAX));
    assert_eq!(none["events"], Value::Array(Vec::new()), "{none}");
    let bad = http_get(addr, "/events?since=yesterday").expect("GET");
    assert_eq!(bad.status, 400, "{bad:?}");
}

#[test]
fn the_log_drops_the_oldest_entries_past_its_capacity() {
    let token = "events-token";
    let program = flaky(&[("WIX_CLUSTER_ADMIN_TOKEN", token)]);
    let addr = program.management_addr();
    let auth = format!("Bearer {token}");
    let scale = |count: usize| {
        let path = format!("/workers/scale?count={count}");
        let response = http_request(addr, "POST", &path, &[("Authorization", auth.as_str())])
            .expect("POST scale");
        assert_eq!(response.status, 202, "{response:?}");
    };
    // Each worker started and stopped is five entries or more (fork, online, listening,
    // disconnect, exit).
    let started = Instant::now();
    let first = events_page(addr, "")["oldest"].as_u64().expect("an entry");
    while events_page(addr, "")["latest"].as_u64().unwrap_or(0) - first < 560 {
        assert!(started.elapsed() < 4 * PATIENCE, "too slow");
        scale(12);
        program.wait_for_workers(12);
        scale(2);
        program.wait_for_workers(2);
    }
    let page = events_page(addr, "");
    let latest = page["latest"].as_u64().expect("latest");
    let kept = page["events"].as_array().expect("events");
    assert_eq!(kept.len(), 500, "{}", kept.len());
    assert!(
        page["oldest"].as_u64() > Some(first),
        "the first entry is gone"
    );
    assert_eq!(
        page["oldest"].as_u64(),
        Some(latest - 499),
        "{}",
        page["oldest"]
    );
    assert_eq!(
        kept.last().map(|e| e["seq"].clone()),
        Some((latest - 499).into())
    );
}

/// One Server-Sent Event as read off the stream, and when it was read.
#[derive(Debug)]
struct Sse {
    id: Option<u64>,
    event: Option<String>,
    data: String,
    read_at: SystemTime,
}

/// A client of `/events/stream`: a thread reads the stream and hands over each event;
/// comment lines (keep-alives) are counted.
struct Stream {
    status: u16,
    events: mpsc::Receiver<Sse>,
    comments: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    closed: std::sync::Arc<std::sync::atomic::AtomicBool>,
    socket: TcpStream,
}

impl Stream {
    fn open(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Stream {
        let mut socket = TcpStream::connect(addr).expect("connect");
        let mut request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n");
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        socket
            .write_all(request.as_bytes())
            .expect("send the request");
        socket
            .set_read_timeout(Some(PATIENCE))
            .expect("read timeout");
        let mut reader = BufReader::new(socket.try_clone().expect("clone the socket"));
        let mut status_line = String::new();
        reader.read_line(&mut status_line).expect("status line");
        let status = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or(0);
        let mut chunked = false;
        let mut length = None;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).expect("a header");
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let lower = line.to_ascii_lowercase();
            chunked |= lower.starts_with("transfer-encoding:") && lower.contains("chunked");
            if let Some(value) = lower.strip_prefix("content-length:") {
                length = value.trim().parse::<usize>().ok();
            }
        }
        let (sender, events) = mpsc::channel();
        let comments = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let closed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        if status == 200 {
            let (comments, closed) = (comments.clone(), closed.clone());
            std::thread::spawn(move || {
                read_events(reader, chunked, sender, &comments);
                closed.store(true, std::sync::atomic::Ordering::SeqCst);
            });
        } else if let Some(length) = length {
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
        }
        Stream {
            status,
            events,
            comments,
            closed,
            socket,
        }
    }

    /// The next event, within `timeout`.
    fn next(&self, timeout: Duration) -> Option<Sse> {
        self.events.recv_timeout(timeout).ok()
    }

    /// The next event whose JSON data `matches`, within `timeout`.
    fn next_matching(
        &self,
        timeout: Duration,
        matches: impl Fn(&Value) -> bool,
    ) -> Option<(Sse, Value)> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            let event = self.next(left)?;
            let data: Value = serde_json::from_str(&event.data).unwrap_or(Value::Null);
            if matches(&data) {
                return Some((event, data));
            }
        }
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        let _ = self.socket.shutdown(std::net::Shutdown::Both);
    }
}

/// Reads the body (chunked or not) and parses it into events until it ends.
fn read_events(
    mut reader: BufReader<TcpStream>,
    chunked: bool,
    events: mpsc::Sender<Sse>,
    comments: &std::sync::atomic::AtomicUsize,
) {
    let mut pending = String::new();
    let (mut id, mut event, mut data) = (None, None, Vec::<String>::new());
    loop {
        let mut bytes = Vec::new();
        if chunked {
            let mut size = String::new();
            if reader.read_line(&mut size).unwrap_or(0) == 0 {
                return;
            }
            let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
                return;
            };
            if size == 0 {
                return;
            }
            bytes.resize(size + 2, 0);
            if reader.read_exact(&mut bytes).is_err() {
                return;
            }
            bytes.truncate(size);
        } else {
            let mut buffer = [0; 4096];
            match reader.read(&mut buffer) {
                Ok(0) | Err(_) => return,
                Ok(n) => bytes.extend_from_slice(&buffer[..n]),
            }
        }
        pending.push_str(&String::from_utf8_lossy(&bytes));
        while let Some(end) = pending.find('\n') {
            let line: String = pending.drain(..=end).collect();
            let line = line.trim_end_matches(['\r', '\n']);
            if line.is_empty() {
                if !data.is_empty() {
                    let sse = Sse {
                        id: id.take(),
                        event: event.take(),
                        data: data.join("\n"),
                        read_at: SystemTime::now(),
                    };
                    data.clear();
                    if events.send(sse).is_err() {
                        return;
                    }
                }
                continue;
            }
            if line.starts_with(':') {
                comments.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            } else if let Some(value) = line.strip_prefix("id:") {
                id = value.trim().parse().ok();
            } else if let Some(value) = line.strip_prefix("event:") {
                event = Some(value.trim().to_owned());
            } else if let Some(value) = line.strip_prefix("data:") {
                data.push(value.strip_prefix(' ').unwrap_or(value).to_owned());
            }
        }
    }
}

fn unix_seconds(time: SystemTime) -> f64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

#[test]
fn the_stream_delivers_a_new_event_as_it_is_recorded_and_outlives_the_idle_timeout() {
    let program = flaky(&[("WIX_CLUSTER_IDLE_TIMEOUT", "1s")]);
    let addr = program.management_addr();
    let victim = program.wait_for_workers(2)[0];
    let stream = Stream::open(addr, "/events/stream", &[]);
    assert_eq!(stream.status, 200);

    // Three idle timeouts with nothing to say: the stream stays open on keep-alives.
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        !stream.closed.load(std::sync::atomic::Ordering::SeqCst),
        "the idle timeout closed the stream"
    );
    assert!(
        stream.comments.load(std::sync::atomic::Ordering::SeqCst) >= 2,
        "no keep-alive comments"
    );

    send_signal(victim, Signal::SIGKILL);
    let (sse, exit) = stream
        .next_matching(PATIENCE, |e| kind(e) == "exit" && pid(e) == Some(victim))
        .unwrap_or_else(|| panic!("no exit on the stream"));
    let recorded = exit["time"].as_f64().expect("a time");
    let delay = unix_seconds(sse.read_at) - recorded;
    // Pushed, not polled: well under the keep-alive period even on a busy machine. How
    // fast it is (milliseconds) is a speed target, measured by bench/run's management
    // section, not asserted here.
    assert!(
        delay < 5.0,
        "the exit reached the stream {delay:.3} s after it was recorded"
    );
    assert!(cause(&exit).contains("SIGKILL"), "{exit}");
    assert_eq!(sse.id, exit["seq"].as_u64(), "the event's id is its seq");
    assert_eq!(sse.event, None, "a plain message event");
}

#[test]
fn the_stream_resumes_after_last_event_id_in_order() {
    let program = flaky(&[]);
    let addr = program.management_addr();
    wait_until(PATIENCE, || events(addr).len() >= 6);
    let latest = events_page(addr, "")["latest"].as_u64().expect("latest");
    let from = (latest - 4).to_string();
    let stream = Stream::open(addr, "/events/stream", &[("Last-Event-ID", from.as_str())]);
    assert_eq!(stream.status, 200);
    let ids: Vec<Option<u64>> = (0..4)
        .map(|_| stream.next(PATIENCE).and_then(|sse| sse.id))
        .collect();
    let expected: Vec<Option<u64>> = (latest - 3..=latest).map(Some).collect();
    assert_eq!(ids, expected);

    // `?since=` does the same when there is no Last-Event-ID.
    let since = Stream::open(addr, &format!("/events/stream?since={}", latest - 1), &[]);
    assert_eq!(since.next(PATIENCE).and_then(|sse| sse.id), Some(latest));
}

#[test]
fn at_most_32_streams_are_open_at_once() {
    let program = flaky(&[]);
    let addr = program.management_addr();
    let open: Vec<Stream> = (0..32)
        .map(|_| Stream::open(addr, "/events/stream", &[]))
        .collect();
    assert!(open.iter().all(|s| s.status == 200));
    let refused = Stream::open(addr, "/events/stream", &[]);
    assert_eq!(refused.status, 503);
    drop(refused);
    drop(open);
    let reopened = wait_until(PATIENCE, || {
        Stream::open(addr, "/events/stream", &[]).status == 200
    });
    assert!(reopened, "a closed stream's place was not freed");
}

#[test]
fn an_upgrade_ends_the_old_masters_streams_and_the_new_master_logs_its_taking_over() {
    let program = flaky(&[]);
    let addr = program.management_addr();
    program.wait_for_workers(2);
    let stream = Stream::open(addr, "/events/stream", &[]);
    assert_eq!(stream.status, 200);
    program.signal(Signal::SIGUSR2);
    let started = stream
        .next_matching(PATIENCE, |e| kind(e) == "upgrade")
        .unwrap_or_else(|| panic!("no upgrade step on the stream"));
    assert!(
        cause(&started.1).starts_with("upgrade started: new master pid"),
        "{}",
        started.1
    );
    let new_master = program.new_master_pid();
    let ended = wait_until(PATIENCE, || {
        stream.closed.load(std::sync::atomic::Ordering::SeqCst)
    });
    assert!(
        ended,
        "the old master's stream is still open after the handover"
    );
    // The new master answers on the same socket, with a log of its own.
    let took_over = wait_for_event(&program, "the new master's taking over", |e| {
        kind(e) == "upgrade" && cause(e).starts_with("took over from the old master")
    });
    let info = http_get(addr, "/").expect("GET /");
    assert!(
        info.body.contains(&format!("\"pid\":{new_master}")),
        "{}",
        info.body
    );
    assert!(took_over["worker"].is_null(), "{took_over}");
    // The new log's seqs are above the old one's: an old cursor replays the new log.
    assert!(
        took_over["seq"].as_u64() > started.1["seq"].as_u64(),
        "{took_over} after {}",
        started.1
    );
    let old_cursor = started.0.id.expect("an id").to_string();
    let resumed = Stream::open(
        addr,
        "/events/stream",
        &[("Last-Event-ID", old_cursor.as_str())],
    );
    assert_eq!(resumed.status, 200);
    let first = resumed.next(PATIENCE).expect("the new log replayed");
    let oldest = events_page(addr, "")["oldest"].as_u64();
    assert_eq!(
        first.id, oldest,
        "the replay starts with the new log's oldest entry"
    );
}

/// A client of `/events/stream` that sends its request and never reads a byte, with a
/// receive buffer as small as the kernel allows (so that what the stream sends fills it
/// soon).
fn silent_stream(addr: SocketAddr) -> TcpStream {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None).expect("a socket");
    // Before connecting: the window is set at the handshake.
    socket.set_recv_buffer_size(1).expect("SO_RCVBUF");
    socket.connect(&addr.into()).expect("connect");
    let fd: std::os::fd::OwnedFd = socket.into();
    let mut stream = TcpStream::from(fd);
    stream
        .write_all(format!("GET /events/stream HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
        .expect("send the request");
    stream
}

#[test]
fn streams_of_clients_that_stop_reading_are_closed_and_a_33rd_is_served() {
    let program = flaky(&[
        ("WIX_CLUSTER_IDLE_TIMEOUT", "1s"),
        ("WIX_CLUSTER_ADMIN_TOKEN", "events-token"),
    ]);
    let addr = program.management_addr();
    let silent: Vec<TcpStream> = (0..32).map(|_| silent_stream(addr)).collect();
    // Every place is taken: a 33rd is refused (a probe that got one is closed at once).
    let full = wait_until(PATIENCE, || {
        Stream::open(addr, "/events/stream", &[]).status == 503
    });
    assert!(full, "the 32 silent clients do not hold every stream");
    // A rolling restart's few entries fill the small windows of the silent clients;
    // from then on their streams only queue keep-alive comments in the kernel.
    let restart = http_request(
        addr,
        "POST",
        "/workers/restart",
        &[("Authorization", "Bearer events-token")],
    )
    .expect("POST /workers/restart");
    assert_eq!(restart.status, 202, "{restart:?}");
    let started = Instant::now();
    let served = wait_until(Duration::from_secs(90), || {
        Stream::open(addr, "/events/stream", &[]).status == 200
    });
    let ss = std::process::Command::new("ss")
        .args([
            "-tnmi",
            "state",
            "established",
            &format!("sport = :{}", addr.port()),
        ])
        .output()
        .map(|o| {
            let all = String::from_utf8_lossy(&o.stdout).into_owned();
            all.lines().take(6).collect::<Vec<_>>().join("\n")
        })
        .unwrap_or_default();
    assert!(
        served,
        "no 33rd stream served within 90 s of 32 clients that never read; sockets:\n{ss}"
    );
    eprintln!(
        "a 33rd stream was served {:?} after the restart",
        started.elapsed()
    );
    // The silent clients' connections were closed: past what their buffers hold, a
    // read ends (a reset or the end of the stream) instead of waiting.
    for mut client in silent {
        client
            .set_read_timeout(Some(PATIENCE))
            .expect("read timeout");
        let mut buffer = [0; 4096];
        let ended = loop {
            match client.read(&mut buffer) {
                Ok(0) => break true,
                Ok(_) => {}
                Err(e) => {
                    break e.kind() != std::io::ErrorKind::WouldBlock
                        && e.kind() != std::io::ErrorKind::TimedOut;
                }
            }
        };
        assert!(ended, "a silent client's stream is still open");
    }
}
