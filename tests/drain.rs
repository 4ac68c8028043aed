//! How a worker's drain ends: HTTP/2 connections get their GOAWAY at once, idle or
//! streaming; a drain with nothing open ends at once, so a roll of idle workers does not
//! wait for the drain timeout.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use hyper_util::rt::{TokioExecutor, TokioIo};
use nix::sys::signal::Signal;
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use wix_cluster_suite::{PATIENCE, Program, is_alive, logged_at, wait_until};

/// A TCP stream that notes when the server's first GOAWAY frame arrived (a client's
/// view of the HTTP/2 frames it reads: 9-byte headers, type 7 is GOAWAY).
struct GoawayWatch {
    inner: tokio::net::TcpStream,
    /// Bytes of the frame header being read, then how much payload is left to skip.
    header: Vec<u8>,
    skip: usize,
    goaway: Arc<Mutex<Option<SystemTime>>>,
}

impl GoawayWatch {
    fn saw(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(bytes.len());
                self.skip -= n;
                bytes = &bytes[n..];
                continue;
            }
            let n = (9 - self.header.len()).min(bytes.len());
            self.header.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            if self.header.len() == 9 {
                let length = usize::from(self.header[0]) << 16
                    | usize::from(self.header[1]) << 8
                    | usize::from(self.header[2]);
                if self.header[3] == 7 {
                    self.goaway.lock().get_or_insert_with(SystemTime::now);
                }
                self.skip = length;
                self.header.clear();
            }
        }
    }
}

impl AsyncRead for GoawayWatch {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            let read = buf.filled()[before..].to_vec();
            self.saw(&read);
        }
        polled
    }
}

impl AsyncWrite for GoawayWatch {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// An h2c connection to `addr` and when its GOAWAY came.
async fn h2c(
    addr: SocketAddr,
) -> (
    hyper::client::conn::http2::SendRequest<String>,
    Arc<Mutex<Option<SystemTime>>>,
) {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let goaway = Arc::new(Mutex::new(None));
    let io = GoawayWatch {
        inner: stream,
        header: Vec::new(),
        skip: 0,
        goaway: goaway.clone(),
    };
    let (sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io))
            .await
            .expect("an HTTP/2 handshake");
    tokio::spawn(connection);
    (sender, goaway)
}

fn get(addr: SocketAddr, path: &str) -> http::Request<String> {
    http::Request::get(path)
        .header(http::header::HOST, addr.to_string())
        .body(String::new())
        .expect("a request")
}

/// The body of `response`, read to its end, or the error that cut it.
async fn read_body(response: http::Response<hyper::body::Incoming>) -> Result<Vec<u8>, String> {
    let mut body = std::pin::pin!(response.into_body());
    let mut received = Vec::new();
    while let Some(frame) =
        std::future::poll_fn(|cx| hyper::body::Body::poll_frame(body.as_mut(), cx)).await
    {
        let frame = frame.map_err(|e| e.to_string())?;
        if let Some(data) = frame.data_ref() {
            received.extend_from_slice(data);
        }
    }
    Ok(received)
}

/// An HTTP/1 connection that served one request and stays open: when it was closed.
fn idle_http1(addr: SocketAddr) -> Arc<Mutex<Option<SystemTime>>> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    let request = format!("GET /stream?secs=0 HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .expect("send a request");
    let mut got = Vec::new();
    let mut buf = [0_u8; 4096];
    while !String::from_utf8_lossy(&got).contains("end of stream") {
        let n = stream.read(&mut buf).expect("read the response");
        assert!(n > 0, "closed before its response ended");
        got.extend_from_slice(&buf[..n]);
    }
    let closed = Arc::new(Mutex::new(None));
    let noted = closed.clone();
    std::thread::spawn(move || {
        while matches!(stream.read(&mut buf), Ok(n) if n > 0) {}
        *noted.lock() = Some(SystemTime::now());
    });
    closed
}

#[test]
fn idle_and_streaming_http2_connections_get_goaway_at_the_drain_start_and_the_stream_completes() {
    // One worker, 5 s drain timeout (Graceful's default): a 3 s stream ends within it.
    let program = Program::start_fixture("slow_io", &[]);
    let addr = program.listening_addr();
    let old = program.wait_for_steady_workers(1);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        // Idle after one request.
        let (mut idle, idle_goaway) = h2c(addr).await;
        let first = idle
            .send_request(get(addr, "/stream?secs=0"))
            .await
            .expect("a first request on the idle connection");
        read_body(first).await.expect("its body");
        // Streaming through the roll.
        let (mut streaming, streaming_goaway) = h2c(addr).await;
        let response = streaming
            .send_request(get(addr, "/stream?secs=3"))
            .await
            .expect("the streamed response's head");
        let body = tokio::spawn(read_body(response));

        // An idle HTTP/1 connection beside them: closed 100 ms after the drain starts
        // (the settle), so a GOAWAY sent at the start comes before its end.
        let http1_closed = idle_http1(addr);

        program.signal(Signal::SIGHUP);
        let asked = program.wait_for_log("the master asked this worker to stop");
        let drain_start = logged_at(&asked);
        let body = body.await.expect("the reading task");
        let body = body.unwrap_or_else(|e| panic!("the stream was cut: {e}"));
        assert!(
            body.ends_with(b"end of stream\n"),
            "the stream did not complete: {} bytes",
            body.len()
        );
        for (what, goaway) in [("idle", &idle_goaway), ("streaming", &streaming_goaway)] {
            let at = goaway
                .lock()
                .unwrap_or_else(|| panic!("the {what} connection got no GOAWAY"));
            let after = at.duration_since(drain_start).unwrap_or_default();
            eprintln!("{what} connection: GOAWAY {after:?} after the drain start");
            // At the drain's start: before the idle HTTP/1 connection's settle is over,
            // long before the 3 s stream ended.
            let http1_closed = *http1_closed.lock();
            assert!(
                http1_closed.is_some_and(|closed| at < closed),
                "the {what} connection got its GOAWAY {after:?} after the drain start, \
                 not before the idle HTTP/1 connection closed ({http1_closed:?})"
            );
        }
    });
    assert!(
        wait_until(PATIENCE, || !is_alive(old[0])),
        "the old worker did not exit"
    );
}

#[test]
fn a_roll_of_four_idle_workers_does_not_wait_for_the_30_s_drain_timeout() {
    let program = Program::start(
        "flaky",
        &[
            ("PORT", "0"),
            ("WIX_CLUSTER_WORKERS", "4"),
            ("DRAIN_TIMEOUT_MS", "30000"),
        ],
    );
    let old = program.wait_for_steady_workers(4);
    let started = Instant::now();
    program.signal(Signal::SIGHUP);
    assert!(
        wait_until(PATIENCE, || old.iter().all(|pid| !is_alive(*pid))),
        "old workers left after the roll: {:?}",
        old.iter().filter(|pid| is_alive(**pid)).collect::<Vec<_>>()
    );
    let took = started.elapsed();
    eprintln!("a roll of 4 idle workers: {took:?} from SIGHUP to the last old worker's exit");
    // Each old worker's drain, by its own clock: from the master's ask to drained.
    for pid in &old {
        let prefix = format!("pid={pid}]");
        let log = program.log();
        let line = |needle: &str| {
            log.lines()
                .find(|line| line.contains(&prefix) && line.contains(needle))
                .map(logged_at)
                .unwrap_or_else(|| panic!("worker {pid} never logged {needle:?}"))
        };
        let drain = line("drained: every connection closed")
            .duration_since(line("the master asked this worker to stop"))
            .unwrap_or_default();
        assert!(
            drain < Duration::from_secs(1),
            "idle worker {pid} took {drain:?} to drain"
        );
    }
    assert!(
        took < Duration::from_secs(15),
        "the roll took {took:?}: it waited for the 30 s drain timeout"
    );
}

#[test]
fn a_rolled_worker_that_ignores_its_drain_is_killed_at_the_drain_timeout() {
    let program = Program::start(
        "flaky",
        &[
            ("PORT", "0"),
            ("IGNORE_SHUTDOWN", "1"),
            ("DRAIN_TIMEOUT_MS", "1000"),
        ],
    );
    let old = program.wait_for_steady_workers(2);
    program.signal(Signal::SIGHUP);
    program.wait_for_log("rolling restart done");
    for pid in &old {
        assert!(
            wait_until(PATIENCE, || !is_alive(*pid)),
            "old worker {pid} that ignores its drain is still there"
        );
    }
    program.wait_for_log("did not stop within 1s; killing it");
}

/// A WebSocket client of `examples/websocket.rs` that never answers the close frame:
/// it keeps its worker draining until the drain's deadline. Returns once the socket is
/// open, with the pid of the worker that took it.
fn deaf_websocket(addr: SocketAddr) -> (std::net::TcpStream, u32) {
    use std::io::Read;
    let mut stream = wix_cluster_suite::raw_websocket(addr, "/chat");
    stream
        .set_read_timeout(Some(PATIENCE))
        .expect("read timeout");
    let mut got = Vec::new();
    let mut buf = [0_u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&got).into_owned();
        if let Some(pid) = text
            .split("hello ")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .and_then(|pid| pid.parse().ok())
        {
            return (stream, pid);
        }
        let n = stream.read(&mut buf).expect("read the handshake answer");
        assert!(n > 0, "closed during the handshake");
        got.extend_from_slice(&buf[..n]);
    }
}

#[test]
fn five_rolls_in_a_row_with_websockets_open_leave_at_most_max_draining_old_workers() {
    let program = Program::start(
        "websocket",
        &[
            ("PORT", "0"),
            ("WIX_CLUSTER_WORKERS", "1"),
            ("DRAIN_TIMEOUT", "60s"),
        ],
    );
    program.wait_for_steady_workers(1);
    let addr = program.listening_addr();
    let master = program.pid();
    let fds_before = wix_cluster_suite::open_fds(master);
    let mut sockets = Vec::new();
    let mut generations = Vec::new();
    for roll in 1..=5 {
        // A socket that keeps this generation draining for the whole 60 s: on the
        // current worker (just after a roll, one that is about to drain may still
        // take a connection from the shared queue: such sockets are kept open too).
        let mut current = Vec::new();
        assert!(
            wait_until(PATIENCE, || {
                current = program
                    .workers()
                    .into_iter()
                    .filter(|pid| !generations.contains(pid))
                    .collect();
                current.len() == 1
            }),
            "no single current worker: {current:?}"
        );
        loop {
            let (socket, pid) = deaf_websocket(addr);
            sockets.push(socket);
            if pid == current[0] {
                break;
            }
        }
        generations.push(current[0]);
        program.signal(Signal::SIGHUP);
        program.wait_for_log_count("rolling restart done", roll);
        // Every socket's worker has been rolled: those alive are draining.
        let draining = |generations: &[u32]| -> Vec<u32> {
            generations
                .iter()
                .copied()
                .filter(|pid| is_alive(*pid))
                .collect()
        };
        assert!(
            wait_until(PATIENCE, || draining(&generations).len() <= 2),
            "after roll {roll}: {:?} old workers draining, max_draining is 2",
            draining(&generations)
        );
    }
    // The oldest were cut short, the two newest still drain (their sockets are open).
    let alive: Vec<u32> = generations
        .iter()
        .copied()
        .filter(|pid| is_alive(*pid))
        .collect();
    assert_eq!(
        alive,
        generations[3..].to_vec(),
        "the two newest old workers drain on"
    );
    let log = program.wait_for_log_count("drain is cut short", 3);
    assert!(log.contains("max_draining"), "{log}");
    let metrics = program.wait_for_200(program.management_addr(), "/metrics");
    assert!(
        metrics
            .body
            .contains("wix_cluster_workers_drains_cut_total 3"),
        "{}",
        metrics.body
    );
    let fds_after = wix_cluster_suite::open_fds(master);
    assert!(
        fds_after <= fds_before + 16,
        "the master's descriptors grew from {fds_before} to {fds_after} over five rolls"
    );
}

#[test]
fn after_an_upgrade_the_old_master_stops_at_its_hard_stop_even_with_workers_that_never_drain() {
    // Workers deaf to their drain and a drain timeout of forever: only the hard stop
    // ends the old master.
    let mut program = Program::start(
        "flaky",
        &[
            ("PORT", "0"),
            ("IGNORE_SHUTDOWN", "1"),
            ("DRAIN_TIMEOUT_MS", "forever"),
            ("WIX_CLUSTER_HARD_STOP_AFTER", "2s"),
        ],
    );
    let old = program.wait_for_steady_workers(2);
    program.signal(Signal::SIGUSR2);
    let new_master = program.new_master_pid();
    let handed_over = Instant::now();
    assert!(
        wait_until(PATIENCE, || program.has_exited()),
        "the old master is still there"
    );
    let took = handed_over.elapsed();
    eprintln!("the old master exited {took:?} after the handover");
    assert!(
        took >= Duration::from_secs(1),
        "the old master exited {took:?} after the handover: before its 2 s hard stop?"
    );
    program.wait_for_log("hard stop: killing the 2 workers still there");
    for pid in &old {
        assert!(
            wait_until(PATIENCE, || !is_alive(*pid)),
            "old worker {pid} outlived its master"
        );
    }
    assert!(is_alive(new_master), "the new master serves on");
    wix_cluster_suite::send_signal(new_master, Signal::SIGKILL);
}
