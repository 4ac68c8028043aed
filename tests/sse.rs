//! Server-sent events through a rolling restart (`examples/sse.rs`), read by an
//! EventSource-style client written here: it parses `id:`, `data:` and `retry:`,
//! reconnects when a stream ends with `Last-Event-ID`, and notes how each stream ended
//! and which worker (`x-worker-pid`) sent it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::Signal;
use wix_cluster_suite::{PATIENCE, Program, wait_until};

/// One event as the client dispatched it, with the worker whose stream carried it.
#[derive(Debug, Clone, PartialEq)]
struct Received {
    id: u64,
    data: String,
    pid: u32,
}

/// How one response (one connection) ended.
#[derive(Debug, Clone, PartialEq)]
enum Ended {
    /// The body finished: chunked encoding's last chunk.
    Cleanly,
    /// Anything else: the connection closed or failed mid-body, or no answer.
    Badly(String),
}

/// What the client saw, shared with the test while it runs.
#[derive(Debug, Default)]
struct Seen {
    events: Vec<Received>,
    /// Each response's worker and how it ended, in order.
    streams: Vec<(u32, Ended)>,
    /// The reconnection delay from the last `retry:` line, in ms.
    retry_ms: Option<u64>,
}

/// An EventSource-style client on a thread of its own until stopped.
struct Client {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Seen>>,
    thread: std::thread::JoinHandle<()>,
}

impl Client {
    fn start(addr: SocketAddr) -> Client {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Seen::default()));
        let thread = {
            let (stop, seen) = (stop.clone(), seen.clone());
            std::thread::spawn(move || {
                let mut last_id: Option<u64> = None;
                while !stop.load(Ordering::Relaxed) {
                    let (pid, ended) = read_one_stream(addr, &mut last_id, &seen, &stop);
                    let retry = {
                        let mut seen = seen.lock().unwrap();
                        seen.streams.push((pid, ended));
                        seen.retry_ms.unwrap_or(3000)
                    };
                    std::thread::sleep(Duration::from_millis(retry));
                }
            })
        };
        Client { stop, seen, thread }
    }

    /// A copy of what it saw so far.
    fn seen(&self) -> (Vec<Received>, Vec<(u32, Ended)>, Option<u64>) {
        let seen = self.seen.lock().unwrap();
        (seen.events.clone(), seen.streams.clone(), seen.retry_ms)
    }

    fn stop(self) -> (Vec<Received>, Vec<(u32, Ended)>, Option<u64>) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("the client thread");
        let seen = self.seen.lock().unwrap();
        (seen.events.clone(), seen.streams.clone(), seen.retry_ms)
    }
}

/// One request of `/events` (with `Last-Event-ID` when an event was seen), read to its
/// end or until `stop`; events go to `seen` as they are dispatched.
fn read_one_stream(
    addr: SocketAddr,
    last_id: &mut Option<u64>,
    seen: &Mutex<Seen>,
    stop: &AtomicBool,
) -> (u32, Ended) {
    let badly = |e: &dyn std::fmt::Display| (0, Ended::Badly(e.to_string()));
    let mut stream = match TcpStream::connect_timeout(&addr, Duration::from_secs(10)) {
        Ok(stream) => stream,
        Err(e) => return badly(&e),
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut request =
        format!("GET /events HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n");
    if let Some(id) = last_id {
        request.push_str(&format!("Last-Event-ID: {id}\r\n"));
    }
    request.push_str("\r\n");
    if let Err(e) = stream.write_all(request.as_bytes()) {
        return badly(&e);
    }
    let mut reader = BufReader::new(stream);
    // The head.
    let head = match wix_cluster_suite::read_ok_head(&mut reader) {
        Ok(head) => head,
        Err(e) => return badly(&e),
    };
    let header = |name: &str| {
        head.iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    let pid = header("x-worker-pid")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let chunked = header("transfer-encoding") == Some("chunked");
    if !chunked {
        return (pid, Ended::Badly("not chunked".to_owned()));
    }
    // The body: chunks, fed to the event parser.
    let mut parser = Parser::default();
    loop {
        if stop.load(Ordering::Relaxed) {
            return (pid, Ended::Cleanly);
        }
        let mut size = String::new();
        match reader.read_line(&mut size) {
            Ok(0) => return (pid, Ended::Badly("closed mid-body".to_owned())),
            Ok(_) => {}
            Err(e) => return (pid, Ended::Badly(format!("mid-body: {e}"))),
        }
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            return (pid, Ended::Badly(format!("bad chunk size {size:?}")));
        };
        let mut chunk = vec![0; size + 2];
        if let Err(e) = reader.read_exact(&mut chunk) {
            return (pid, Ended::Badly(format!("mid-chunk: {e}")));
        }
        if size == 0 {
            return (pid, Ended::Cleanly);
        }
        chunk.truncate(size);
        for event in parser.feed(&String::from_utf8_lossy(&chunk)) {
            let mut seen = seen.lock().unwrap();
            if let Some(retry) = event.retry {
                seen.retry_ms = Some(retry);
            }
            if let Some(id) = event.id {
                *last_id = Some(id);
                seen.events.push(Received {
                    id,
                    data: event.data,
                    pid,
                });
            }
        }
    }
}

/// An event as the EventSource parser dispatches it.
#[derive(Default)]
struct ParsedEvent {
    id: Option<u64>,
    data: String,
    retry: Option<u64>,
}

/// The text/event-stream parser: lines into events, dispatched at each blank line.
#[derive(Default)]
struct Parser {
    partial: String,
    event: ParsedEvent,
}

impl Parser {
    fn feed(&mut self, text: &str) -> Vec<ParsedEvent> {
        self.partial.push_str(text);
        let mut events = Vec::new();
        while let Some(end) = self.partial.find('\n') {
            let line: String = self.partial.drain(..=end).collect();
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                events.push(std::mem::take(&mut self.event));
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "id" => self.event.id = value.parse().ok(),
                "data" => {
                    if !self.event.data.is_empty() {
                        self.event.data.push('\n');
                    }
                    self.event.data.push_str(value);
                }
                "retry" => self.event.retry = value.parse().ok(),
                _ => {} // a comment (`:`) or a field this client does not use
            }
        }
        events
    }
}

#[test]
fn an_sse_stream_through_a_rolling_restart_resumes_on_another_worker_with_no_gap() {
    let program = Program::start(
        "sse",
        &[
            ("HOST", "127.0.0.1"),
            ("PORT", "0"),
            ("WIX_CLUSTER_WORKERS", "2"),
            ("INTERVAL_MS", "20"),
        ],
    );
    let addr = program.listening_addr();
    let before = program.wait_for_workers(2);
    let client = Client::start(addr);
    let flowing = wait_until(PATIENCE, || client.seen().0.len() >= 10);
    assert!(flowing, "events before the roll: {:?}", client.seen());

    program.signal(Signal::SIGHUP);
    program.wait_for_log("rolling restart done");
    let after = program.wait_for_workers(2);
    assert!(after.iter().all(|pid| !before.contains(pid)));
    // The client is on a new worker and has had events from it.
    let moved = wait_until(PATIENCE, || {
        let (events, _, _) = client.seen();
        events
            .iter()
            .rev()
            .take(10)
            .all(|event| after.contains(&event.pid))
            && events.iter().filter(|e| after.contains(&e.pid)).count() >= 10
    });
    let (events, streams, retry) = client.stop();
    assert!(moved, "the client never moved to a new worker: {streams:?}");

    assert_eq!(retry, Some(500), "the stream said `retry: 500`");
    // Every event from 1 on, once, in order, each the pure function of its number.
    for (i, event) in events.iter().enumerate() {
        let n = i as u64 + 1;
        assert_eq!(
            (event.id, event.data.as_str()),
            (n, format!("tick {n}, square {}", n * n).as_str()),
            "event {i} of {} (a gap or a duplicate); streams {streams:?}",
            events.len()
        );
    }
    // The streams that ended before the client stopped ended cleanly (the body
    // finished), each moving the client to another worker; the last one is a new
    // worker's.
    let (last, ended) = streams.split_last().expect("at least one stream");
    assert!(after.contains(&last.0), "the last stream: {last:?}");
    assert!(
        !ended.is_empty(),
        "the client never reconnected: {streams:?}"
    );
    for (i, (pid, how)) in ended.iter().enumerate() {
        assert_eq!(how, &Ended::Cleanly, "stream {i} from {pid}: {streams:?}");
        let next = streams[i + 1].0;
        assert_ne!(*pid, next, "reconnected to the same worker: {streams:?}");
    }
    // Each resumed stream started right after the last event of the one before.
    for pair in events.windows(2) {
        if pair[0].pid != pair[1].pid {
            assert_eq!(pair[1].id, pair[0].id + 1);
        }
    }
}
