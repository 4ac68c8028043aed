//! HTTP/1.1 pipelining, on the `metrics` example with one worker and a raw client: 16
//! requests sent in one write are answered in order, and their responses leave the
//! server together (the client's socket received them in one or two TCP segments, not
//! sixteen: every write of the server's is a segment, its sockets being `TCP_NODELAY`);
//! a head past `max_header_bytes` behind a pipelined request is still answered 431
//! before the connection closes (what hyper's own `pipeline_flush` loses); and a
//! keep-alive request costs the worker one read (`strace` of the worker: no `recvfrom`
//! that fails with EAGAIN after each request, as there was when the socket's readiness
//! was cleared only by such a read).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use wix_cluster_suite::{PATIENCE, Program};

/// The `metrics` example, one worker, its app's address.
fn start(env: &[(&str, &str)]) -> (Program, SocketAddr) {
    let mut all = vec![("PORT", "0"), ("WIX_CLUSTER_WORKERS", "1")];
    all.extend_from_slice(env);
    let program = Program::start("metrics", &all);
    program.wait_for_workers(1);
    let addr = program.listening_addr();
    program.wait_for_200(addr, "/");
    (program, addr)
}

/// The status codes of the responses in `received`, in order (each response's body is
/// empty or short, and holds no status line).
fn statuses(received: &[u8]) -> Vec<u16> {
    let text = String::from_utf8_lossy(received);
    text.match_indices("HTTP/1.1 ")
        .filter_map(|(at, _)| text.get(at + 9..at + 12)?.parse().ok())
        .collect()
}

/// Reads from `stream` until `done` says the bytes are complete or the server closes;
/// panics after [`PATIENCE`].
fn read_until(stream: &mut TcpStream, done: impl Fn(&[u8]) -> bool) -> Vec<u8> {
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("read timeout");
    let deadline = Instant::now() + PATIENCE;
    let mut received = Vec::new();
    let mut chunk = [0u8; 64 * 1024];
    while !done(&received) {
        assert!(
            Instant::now() < deadline,
            "incomplete after {PATIENCE:?}: {:?}",
            String::from_utf8_lossy(&received)
        );
        match stream.read(&mut chunk) {
            // A close with unread bytes (the rest of a head past the limit) is a reset,
            // after what was sent.
            Ok(0) => break,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Ok(n) => received.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("reading: {e}"),
        }
    }
    received
}

/// The TCP segments with data `stream` has received (`tcpi_data_segs_in`).
fn data_segments_in(stream: &TcpStream) -> u32 {
    // SAFETY: `tcp_info` is plain old data, valid zeroed; the length says how much the
    // kernel may write.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    let got = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&raw mut info).cast(),
            &mut len,
        )
    };
    assert_eq!(got, 0, "TCP_INFO: {}", std::io::Error::last_os_error());
    info.tcpi_data_segs_in
}

#[test]
fn sixteen_pipelined_requests_are_answered_in_order_and_leave_together() {
    let (_program, addr) = start(&[]);
    let expected: Vec<u16> = (200..216).collect();
    let batch: String = expected
        .iter()
        .map(|code| format!("GET /status/{code} HTTP/1.1\r\nHost: pipelining\r\n\r\n"))
        .collect();
    // A few batches: the first may meet a worker still warming up.
    let mut segments = Vec::new();
    for _ in 0..5 {
        let mut stream = TcpStream::connect(addr).expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        stream.write_all(batch.as_bytes()).expect("write the batch");
        let received = read_until(&mut stream, |received| {
            statuses(received).len() == expected.len() && received.ends_with(b"\r\n\r\n")
        });
        assert_eq!(
            statuses(&received),
            expected,
            "{:?}",
            String::from_utf8_lossy(&received)
        );
        segments.push(data_segments_in(&stream));
    }
    // One write per batch, or two if hyper's loop yielded midway; never one per
    // response.
    assert!(
        segments.iter().any(|&n| n <= 2),
        "the 16 responses came in {segments:?} segments per batch"
    );
    assert!(
        segments.iter().all(|&n| n < 8),
        "the 16 responses came in {segments:?} segments per batch"
    );
}

#[test]
fn a_head_past_max_header_bytes_behind_a_pipelined_request_is_answered_431() {
    let (_program, addr) = start(&[("WIX_CLUSTER_MAX_HEADER_BYTES", "16KiB")]);
    let mut batch = b"GET /status/200 HTTP/1.1\r\nHost: pipelining\r\n\r\n".to_vec();
    batch.extend_from_slice(b"GET / HTTP/1.1\r\nHost: pipelining\r\nx-big: ");
    batch.extend(std::iter::repeat_n(b'a', 32 * 1024));
    batch.extend_from_slice(b"\r\n\r\n");
    let mut stream = TcpStream::connect(addr).expect("connect");
    // The server may close before it has read all of the head: what it answered
    // before is what counts.
    let _ = stream.write_all(&batch);
    let received = read_until(&mut stream, |_| false);
    assert_eq!(
        statuses(&received),
        vec![200, 431],
        "{:?}",
        String::from_utf8_lossy(&received)
    );
}

/// `strace` following the `recvfrom` calls of a process into a file; killed on drop.
struct Strace {
    child: Child,
    out: std::path::PathBuf,
    /// Its stderr, kept open (its "detached" lines go there at the end).
    _stderr: BufReader<std::process::ChildStderr>,
}

impl Strace {
    /// Attaches to `pid` (every thread) and returns once strace says it is attached.
    fn attach(pid: u32) -> Strace {
        let out = std::env::temp_dir().join(format!("wix-strace-{}-{pid}", std::process::id()));
        let mut child = Command::new("strace")
            .args(["-f", "-e", "trace=recvfrom", "-o"])
            .arg(&out)
            .args(["-p", &pid.to_string()])
            .stderr(Stdio::piped())
            .spawn()
            .expect("strace (Debian's strace package; .ci/run installs it)");
        let stderr = child.stderr.take().expect("strace's stderr");
        let mut stderr = BufReader::new(stderr);
        let mut attached = String::new();
        stderr
            .read_line(&mut attached)
            .expect("strace's first line");
        assert!(
            attached.contains("attached"),
            "strace did not attach: {attached}"
        );
        Strace {
            child,
            out,
            _stderr: stderr,
        }
    }

    /// Stops tracing; the calls traced, one per line.
    fn finish(mut self) -> Vec<String> {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGINT,
        );
        let _ = self.child.wait();
        let text = std::fs::read_to_string(&self.out).expect("strace's output");
        text.lines().map(str::to_owned).collect()
    }
}

impl Drop for Strace {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.out);
    }
}

#[test]
fn a_keep_alive_request_costs_the_worker_one_read() {
    let (program, addr) = start(&[]);
    let worker = program.workers()[0];
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let request = b"GET /status/200 HTTP/1.1\r\nHost: reads\r\n\r\n";
    // The connection is accepted and served once before tracing starts.
    stream.write_all(request).expect("write a request");
    read_until(&mut stream, |received| received.ends_with(b"\r\n\r\n"));
    let strace = Strace::attach(worker);
    const REQUESTS: usize = 200;
    for _ in 0..REQUESTS {
        stream.write_all(request).expect("write a request");
        let received = read_until(&mut stream, |received| received.ends_with(b"\r\n\r\n"));
        assert_eq!(statuses(&received), vec![200]);
    }
    let calls = strace.finish();
    let reads = calls
        .iter()
        .filter(|line| line.contains("recvfrom("))
        .count();
    let failed = calls.iter().filter(|line| line.contains("EAGAIN")).count();
    assert!(
        reads >= REQUESTS,
        "strace saw {reads} recvfrom calls for {REQUESTS} requests: {calls:?}"
    );
    // Each request is read by one call that leaves room in the buffer; none needs a
    // second call to learn that the socket is empty.
    assert!(
        failed < REQUESTS / 10,
        "{failed} of {reads} recvfrom calls failed with EAGAIN for {REQUESTS} requests"
    );
}
