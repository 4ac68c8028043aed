//! The connection settings against slow, legitimate traffic and against the limits
//! they set, on the `slow_io` fixture with hyper's client (HTTP/1.1, and HTTP/2 over
//! cleartext with prior knowledge): a response streamed slowly, with a silence longer
//! than both timeouts, completes under 2 s/3 s header/idle timeouts; a stalled request
//! body is answered 408 after the body read timeout, on both ports, and a trickled one
//! is read whole.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hyper::body::Body as _;
use hyper_util::rt::{TokioExecutor, TokioIo};
use wix_cluster_suite::{PATIENCE, Program};

/// The header read and idle timeouts of these tests: far shorter than the responses.
const SHORT_TIMEOUTS: [(&str, &str); 3] = [
    ("PORT", "0"),
    ("WIX_CLUSTER_HEADER_READ_TIMEOUT", "2s"),
    ("WIX_CLUSTER_IDLE_TIMEOUT", "3s"),
];

/// The last line of every `/stream` response of `slow_io`.
const END: &[u8] = b"end of stream\n";

#[derive(Clone, Copy, Debug)]
enum Protocol {
    Http1,
    /// HTTP/2 over cleartext, with prior knowledge.
    H2c,
}

/// What a request got: the status and every body byte received, or how it ended early.
struct Fetched {
    status: u16,
    body: Vec<u8>,
    /// The error that ended the response before its end, if one did.
    error: Option<String>,
    took: Duration,
}

/// `GET path` on a new connection with hyper's client, reading the body to its end.
fn get(addr: SocketAddr, path: &str, protocol: Protocol) -> Fetched {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let started = Instant::now();
        let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let io = TokioIo::new(stream);
        let request = http::Request::get(path)
            .header(http::header::HOST, addr.to_string())
            .body(String::new())
            .expect("a request");
        let response = match protocol {
            Protocol::Http1 => {
                let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
                    .await
                    .expect("an HTTP/1 handshake");
                tokio::spawn(connection);
                sender.send_request(request).await
            }
            Protocol::H2c => {
                let (mut sender, connection) =
                    hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                        .await
                        .expect("an HTTP/2 handshake");
                tokio::spawn(connection);
                sender.send_request(request).await
            }
        };
        let response = response.unwrap_or_else(|e| panic!("{protocol:?} GET {path}: {e}"));
        let status = response.status().as_u16();
        let mut body = std::pin::pin!(response.into_body());
        let mut received = Vec::new();
        let mut error = None;
        while let Some(frame) = std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
            match frame {
                Ok(frame) => {
                    if let Some(data) = frame.data_ref() {
                        received.extend_from_slice(data);
                    }
                }
                Err(e) => {
                    error = Some(e.to_string());
                    break;
                }
            }
        }
        Fetched {
            status,
            body: received,
            error,
            took: started.elapsed(),
        }
    })
}

/// A 20 s response streamed at 1 KiB per 50 ms with a 4 s silence in the middle
/// (longer than both timeouts) arrives whole: the request is in flight until its body
/// has been sent, whatever the client sends meanwhile (HTTP/2's WINDOW_UPDATEs).
fn slow_stream_completes(protocol: Protocol) {
    let program = Program::start_fixture("slow_io", &SHORT_TIMEOUTS);
    let addr = program.listening_addr();
    program.wait_for_workers(1);
    let fetched = get(addr, "/stream?secs=20&pause=4", protocol);
    assert_eq!(fetched.status, 200);
    assert!(
        fetched.error.is_none() && fetched.body.ends_with(END),
        "{protocol:?}: the response was cut after {:?} and {} bytes: {:?}",
        fetched.took,
        fetched.body.len(),
        fetched.error
    );
    assert!(
        fetched.took >= Duration::from_secs(19),
        "{protocol:?}: the stream ended after {:?}, before its 20 s",
        fetched.took
    );
}

#[test]
fn a_slowly_streamed_h2c_response_outlives_the_header_read_and_idle_timeouts() {
    slow_stream_completes(Protocol::H2c);
}

#[test]
fn a_slowly_streamed_http1_response_outlives_the_header_read_and_idle_timeouts() {
    slow_stream_completes(Protocol::Http1);
}

/// The settings of the body tests: the timeouts above and a 2 s body read timeout.
const SHORT_BODY_TIMEOUT: [(&str, &str); 4] = [
    SHORT_TIMEOUTS[0],
    SHORT_TIMEOUTS[1],
    SHORT_TIMEOUTS[2],
    ("WIX_CLUSTER_BODY_READ_TIMEOUT", "2s"),
];

/// Sends `request` on a new connection, then reads until the server closes it; panics
/// if it does not within [`PATIENCE`]. Returns what was received.
fn send_and_read_to_close(addr: SocketAddr, request: &[u8]) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream.write_all(request).expect("send");
    stream
        .set_read_timeout(Some(PATIENCE))
        .expect("a read timeout");
    let mut received = Vec::new();
    match stream.read_to_end(&mut received) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!(
            "the server did not close the connection within {PATIENCE:?} ({e}); it sent {:?}",
            String::from_utf8_lossy(&received)
        ),
    }
    String::from_utf8_lossy(&received).into_owned()
}

/// A POST declaring 100 MB that sends 3 bytes and then nothing, to a route that reads
/// the whole body, is answered 408 and closed.
fn stalled_body_is_answered_408(addr: SocketAddr) {
    let started = Instant::now();
    let received = send_and_read_to_close(
        addr,
        b"POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100000000\r\n\r\nabc",
    );
    assert!(
        received.starts_with("HTTP/1.1 408"),
        "after {:?}: {received:?}",
        started.elapsed()
    );
    assert!(received.contains("connection: close"), "{received:?}");
}

/// A body sent a byte every 500 ms, each byte well within the 2 s body read timeout,
/// is read whole: the timeout is between reads, not for the whole body.
fn trickled_body_is_read_whole(addr: SocketAddr) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream
        .write_all(b"POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10\r\nConnection: close\r\n\r\n")
        .expect("send the head");
    for _ in 0..10 {
        std::thread::sleep(Duration::from_millis(500));
        stream.write_all(b"x").expect("send a byte");
    }
    stream
        .set_read_timeout(Some(PATIENCE))
        .expect("a read timeout");
    let mut received = String::new();
    let _ = stream.read_to_string(&mut received);
    assert!(received.starts_with("HTTP/1.1 200"), "{received:?}");
    assert!(received.ends_with("read 10 bytes"), "{received:?}");
}

#[test]
fn a_stalled_request_body_to_the_app_is_answered_408_after_the_body_read_timeout() {
    let program = Program::start_fixture("slow_io", &SHORT_BODY_TIMEOUT);
    let addr = program.listening_addr();
    program.wait_for_workers(1);
    stalled_body_is_answered_408(addr);
    trickled_body_is_read_whole(addr);
}

#[test]
fn a_stalled_request_body_to_the_management_app_is_answered_408_too() {
    let program = Program::start_fixture("slow_io", &SHORT_BODY_TIMEOUT);
    let management = program.management_addr();
    program.wait_for_workers(1);
    stalled_body_is_answered_408(management);
    trickled_body_is_read_whole(management);
}

/// `GET /` with one `X-Big` header of `bytes` bytes, on a new connection.
fn head_of(addr: SocketAddr, bytes: usize) -> String {
    let head = format!(
        "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nX-Big: {}\r\n\r\n",
        "a".repeat(bytes)
    );
    send_and_read_to_close(addr, head.as_bytes())
}

/// A 100 KiB head (past the 64 KiB default) is answered 431; a 60 KiB one is served.
fn large_heads_are_answered_431(addr: SocketAddr) {
    let received = head_of(addr, 100 * 1024);
    assert!(received.starts_with("HTTP/1.1 431"), "{received:?}");
    let received = head_of(addr, 60 * 1024);
    assert!(
        !received.starts_with("HTTP/1.1 431") && received.starts_with("HTTP/1.1 "),
        "{received:?}"
    );
}

#[test]
fn a_request_head_past_max_header_bytes_is_answered_431_by_the_app() {
    let program = Program::start_fixture("slow_io", &SHORT_TIMEOUTS);
    let addr = program.listening_addr();
    program.wait_for_workers(1);
    large_heads_are_answered_431(addr);
}

#[test]
fn a_request_head_past_max_header_bytes_is_answered_431_by_the_management_app() {
    let program = Program::start_fixture("slow_io", &SHORT_TIMEOUTS);
    let management = program.management_addr();
    program.wait_for_workers(1);
    large_heads_are_answered_431(management);
}

/// `GET /` over h2c with one `x-big` header of `bytes` bytes: the status, or the error.
fn h2_head_of(addr: SocketAddr, bytes: usize) -> Result<u16, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (mut sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .expect("an HTTP/2 handshake");
        tokio::spawn(connection);
        let request = http::Request::get(format!("http://{addr}/stream?secs=0"))
            .header("x-big", "a".repeat(bytes))
            .body(String::new())
            .expect("a request");
        sender
            .send_request(request)
            .await
            .map(|response| response.status().as_u16())
            .map_err(|e| e.to_string())
    })
}

#[test]
fn over_h2c_the_header_list_limit_is_max_header_bytes() {
    let program = Program::start_fixture("slow_io", &SHORT_TIMEOUTS);
    let addr = program.listening_addr();
    program.wait_for_workers(1);
    // hyper's default for HTTP/2 is 16 KiB: 60 KiB is within the 64 KiB setting.
    assert_eq!(h2_head_of(addr, 60 * 1024), Ok(200));
    let refused = h2_head_of(addr, 100 * 1024);
    assert!(
        refused == Ok(431) || refused.is_err(),
        "a 100 KiB header list: {refused:?}"
    );
}

#[test]
fn max_header_bytes_from_the_environment_applies_to_both_ports() {
    let mut env = SHORT_TIMEOUTS.to_vec();
    env.push(("WIX_CLUSTER_MAX_HEADER_BYTES", "16KiB"));
    let program = Program::start_fixture("slow_io", &env);
    program.wait_for_workers(1);
    for addr in [program.listening_addr(), program.management_addr()] {
        let received = head_of(addr, 20 * 1024);
        assert!(received.starts_with("HTTP/1.1 431"), "{received:?}");
        let received = head_of(addr, 12 * 1024);
        assert!(!received.starts_with("HTTP/1.1 431"), "{received:?}");
    }
}

#[test]
fn bad_body_read_timeout_or_max_header_bytes_exits_2_with_one_clear_line() {
    for (variable, bad) in [
        ("WIX_CLUSTER_BODY_READ_TIMEOUT", "0s"),
        ("WIX_CLUSTER_BODY_READ_TIMEOUT", "soon"),
        ("WIX_CLUSTER_MAX_HEADER_BYTES", "1KiB"),
        ("WIX_CLUSTER_MAX_HEADER_BYTES", "big"),
    ] {
        let mut program = Program::start_fixture("slow_io", &[("PORT", "0"), (variable, bad)]);
        program.assert_exits_with(2);
        let log = program.log();
        let lines: Vec<&str> = log.lines().collect();
        assert_eq!(lines.len(), 1, "one line: {lines:?}");
        assert!(
            lines[0].contains(&format!("{variable}=\"{bad}\"")),
            "the line names the variable and the value: {lines:?}"
        );
    }
}
