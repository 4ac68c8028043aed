//! Hostile clients: half-sent request heads and idle connections are closed after their
//! timeouts, on the app's port and on the management port, and a slowloris of thousands
//! of half-sent heads, against a program started under the common soft descriptor limit
//! of 1024, leaves normal clients answered; 3000 connections each holding a 60 KiB head
//! (just under the 64 KiB `max_header_bytes`) grow a worker's RSS by at most 128 KiB
//! each.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use wix_cluster_suite::{PATIENCE, Program, http_get, wait_until};

const SHORT_TIMEOUTS: [(&str, &str); 5] = [
    ("HOST", "127.0.0.1"),
    ("PORT", "0"),
    ("WIX_CLUSTER_WORKERS", "2"),
    ("WIX_CLUSTER_HEADER_READ_TIMEOUT", "1s"),
    ("WIX_CLUSTER_IDLE_TIMEOUT", "4s"),
];

/// The window in which the header read timeout (1 s) must close a half-sent head or a
/// silent connection: after the timeout, and well before the idle timeout (4 s) could
/// have done it instead. The upper end allows 2 s of lateness on a busy machine.
const HEADER_TIMEOUT_WINDOW: std::ops::Range<Duration> =
    Duration::from_millis(900)..Duration::from_millis(3000);

/// Reads until the server closes the connection; panics if it does not within 10 s.
fn closed_by_server(mut stream: TcpStream, what: &str) -> Vec<u8> {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    let mut received = Vec::new();
    match stream.read_to_end(&mut received) {
        Ok(_) => received,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => received,
        Err(e) => panic!("{what}: the server did not close the connection: {e}"),
    }
}

fn half_sent_head(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: slow\r\nX-Slow: ")
        .expect("send part of a head");
    stream
}

fn assert_timeouts_close(addr: SocketAddr, path: &str) {
    // A half-sent head, and a connection that sends nothing at all: both closed by the
    // header read timeout, not by the idle one.
    let started = Instant::now();
    let received = closed_by_server(half_sent_head(addr), "half-sent head");
    let took = started.elapsed();
    assert!(
        HEADER_TIMEOUT_WINDOW.contains(&took),
        "a half-sent head was closed after {took:?}, not within {HEADER_TIMEOUT_WINDOW:?}"
    );
    assert!(
        !received.starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&received)
    );
    let started = Instant::now();
    closed_by_server(
        TcpStream::connect(addr).expect("connect"),
        "silent connection",
    );
    let took = started.elapsed();
    assert!(
        HEADER_TIMEOUT_WINDOW.contains(&took),
        "a silent connection was closed after {took:?}, not within {HEADER_TIMEOUT_WINDOW:?}"
    );

    // A kept-alive connection: served, then closed once idle.
    let mut stream = TcpStream::connect(addr).expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .expect("send a request");
    let started = Instant::now();
    let received = closed_by_server(stream, "idle keep-alive connection");
    let text = String::from_utf8_lossy(&received);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        !text.contains("connection: close"),
        "the response must not have asked to close: {text}"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(3500),
        "closed before the 4 s idle timeout: {:?}",
        started.elapsed()
    );
}

#[test]
fn half_sent_heads_and_idle_connections_to_the_app_are_closed_after_their_timeouts() {
    let program = Program::start("hello", &SHORT_TIMEOUTS);
    let addr = program.listening_addr();
    program.wait_for_workers(2);
    program.wait_for_200(addr, "/");
    assert_timeouts_close(addr, "/");
}

#[test]
fn half_sent_heads_and_idle_connections_to_the_management_app_are_closed_too() {
    let program = Program::start("hello", &SHORT_TIMEOUTS);
    let management = program.management_addr();
    program.wait_for_200(management, "/health/is_alive");
    assert_timeouts_close(management, "/health/is_alive");
}

/// Raises this process's soft descriptor limit to its hard one; returns the hard one.
fn raise_own_nofile() -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("read the limit");
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).expect("raise the limit");
    hard
}

/// Starts `hello` under a soft descriptor limit of 1024 (systemd's default for
/// services), the hard limit left as it is.
fn hello_under_soft_limit_1024() -> Program {
    Program::start_wrapped(
        &["sh", "-c", "ulimit -S -n 1024 && exec \"$0\""],
        "hello",
        &[
            ("HOST", "127.0.0.1"),
            ("PORT", "0"),
            ("WIX_CLUSTER_WORKERS", "2"),
        ],
    )
}

/// Opens `count` connections to `addr`, each sending part of a request head and then
/// nothing, and keeps reopening those the server closes, until `stop`.
fn slowloris(
    addr: SocketAddr,
    count: usize,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        let mut held: Vec<TcpStream> = Vec::new();
        let mut opened = 0;
        while !stop.load(Ordering::Relaxed) {
            while held.len() < count && !stop.load(Ordering::Relaxed) {
                match TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
                    Ok(mut stream) => {
                        let _ = stream.write_all(b"GET / HTTP/1.1\r\nHost: loris\r\nX-a: ");
                        held.push(stream);
                        opened += 1;
                    }
                    Err(_) => break,
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        opened
    })
}

/// Probes `path` every 100 ms for `duration`, each with [`PROBE_DEADLINE`]; returns
/// (answered within [`PROBE_DEADLINE`], probes).
fn probe(addr: SocketAddr, path: &str, duration: Duration) -> (usize, usize) {
    let started = Instant::now();
    let (mut answered, mut probes) = (0, 0);
    while started.elapsed() < duration {
        probes += 1;
        let sent = Instant::now();
        let mut stream = match TcpStream::connect_timeout(&addr, PROBE_DEADLINE) {
            Ok(stream) => stream,
            Err(_) => continue,
        };
        let _ = stream.set_read_timeout(Some(PROBE_DEADLINE));
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        let mut response = Vec::new();
        let ok = stream.write_all(request.as_bytes()).is_ok()
            && stream.read_to_end(&mut response).is_ok()
            && response.starts_with(b"HTTP/1.1 200");
        if ok && sent.elapsed() <= PROBE_DEADLINE {
            answered += 1;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    (answered, probes)
}

/// A probe's deadline during a slowloris: generous (a busy machine), since how fast
/// probes are answered is a speed target, not what the test proves (that they are).
const PROBE_DEADLINE: Duration = Duration::from_secs(10);

/// How many half-sent heads the slowloris holds: more than two workers could hold under
/// the soft limit of 1024 they start with, plus the listener's backlog of 1024, so that
/// it proves the master's raise of the limit (which the workers inherit).
const LORISES: usize = 3000;

fn survives_a_slowloris(target: impl Fn(&Program) -> SocketAddr, path: &str) {
    let hard = raise_own_nofile();
    // This process holds every loris and its probes; a smaller slowloris would prove
    // nothing (it would pass with the raise deleted): fail rather than shrink it.
    let needed = LORISES as u64 + 200;
    assert!(
        hard >= needed,
        "the hard descriptor limit ({hard}) is below the {needed} this test needs: raise it \
         (ulimit -Hn) to run the slowloris tests"
    );
    let count = LORISES;
    let program = hello_under_soft_limit_1024();
    program.wait_for_workers(2);
    let addr = target(&program);
    program.wait_for_200(addr, path);
    // The workers run with the limit raised from 1024 to the hard one.
    let management = program.management_addr();
    let page = program.wait_for_200(management, "/metrics").body;
    let max_fds: Vec<(String, f64)> = page
        .lines()
        .filter(|line| line.starts_with("process_max_fds{") && !line.contains("master"))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect();
    assert_eq!(
        max_fds.len(),
        2,
        "one process_max_fds per worker: {max_fds:?}"
    );
    for (series, value) in &max_fds {
        assert_eq!(*value, hard as f64, "{series}: the limit was not raised");
    }
    let stop = Arc::new(AtomicBool::new(false));
    let attack = slowloris(addr, count, stop.clone());
    std::thread::sleep(Duration::from_secs(2));
    let (answered, probes) = probe(addr, path, Duration::from_secs(8));
    stop.store(true, Ordering::Relaxed);
    let opened = attack.join().expect("attack thread");
    assert!(
        opened >= count,
        "the attack opened only {opened} of {count} connections"
    );
    assert!(
        answered * 10 >= probes * 9,
        "{answered} of {probes} probes answered within {PROBE_DEADLINE:?} during a slowloris of {count}"
    );
    assert!(http_get(addr, path).is_ok_and(|r| r.status == 200));
}

#[test]
fn a_slowloris_on_the_app_port_leaves_normal_clients_answered() {
    survives_a_slowloris(Program::listening_addr, "/");
}

#[test]
fn a_slowloris_on_the_management_port_leaves_is_alive_answered() {
    survives_a_slowloris(Program::management_addr, "/health/is_alive");
}

/// How many connections [`large_heads_keep_the_worker_rss_bounded`] opens.
const LARGE_HEADS: usize = 3000;

/// The most a worker's RSS may grow per connection holding a head of just under the
/// 64 KiB `max_header_bytes` default (docs/operating.md, *Limits*).
const RSS_PER_HEAD: u64 = 128 * 1024;

#[test]
fn large_heads_keep_the_worker_rss_bounded() {
    let hard = raise_own_nofile();
    assert!(
        hard as usize >= LARGE_HEADS + 500,
        "the hard descriptor limit ({hard}) is too low for {LARGE_HEADS} connections: \
         raise it (ulimit -Hn) to at least {}",
        LARGE_HEADS + 500
    );
    let program = Program::start(
        "hello",
        &[
            ("HOST", "127.0.0.1"),
            ("PORT", "0"),
            ("WIX_CLUSTER_WORKERS", "1"),
            // Held for the whole measurement.
            ("WIX_CLUSTER_HEADER_READ_TIMEOUT", "5m"),
        ],
    );
    let worker = program.wait_for_workers(1)[0];
    let addr = program.listening_addr();
    program.wait_for_200(addr, "/");
    let before = wix_cluster_suite::rss_bytes(worker);
    // Just under the limit: a request line, a Host header and one 60 KiB header, not
    // ended.
    let mut head = b"GET / HTTP/1.1\r\nHost: large\r\nX-Large: ".to_vec();
    head.resize(60 * 1024, b'a');
    let mut held = Vec::with_capacity(LARGE_HEADS);
    while held.len() < LARGE_HEADS {
        let mut stream = TcpStream::connect_timeout(&addr, PATIENCE).expect("connect");
        stream
            .set_write_timeout(Some(PATIENCE))
            .expect("a write timeout");
        stream.write_all(&head).expect("send 60 KiB of a head");
        held.push(stream);
    }
    // The positive sign: the worker holds every connection.
    assert!(
        wait_until(PATIENCE, || wix_cluster_suite::open_fds(worker)
            >= LARGE_HEADS),
        "the worker holds {} descriptors, not {LARGE_HEADS} connections",
        wix_cluster_suite::open_fds(worker)
    );
    let mut peak = 0;
    let window = Instant::now();
    while window.elapsed() < Duration::from_secs(3) {
        peak = peak.max(wix_cluster_suite::rss_bytes(worker));
        std::thread::sleep(Duration::from_millis(100));
    }
    let grown = peak.saturating_sub(before);
    eprintln!(
        "worker RSS {} MiB before, {} MiB at most with {LARGE_HEADS} heads of 60 KiB \
         ({} KiB per connection)",
        before >> 20,
        peak >> 20,
        grown / LARGE_HEADS as u64 / 1024
    );
    assert!(
        grown <= RSS_PER_HEAD * LARGE_HEADS as u64,
        "the worker's RSS grew by {} MiB for {LARGE_HEADS} heads, more than {} KiB each",
        grown >> 20,
        RSS_PER_HEAD / 1024
    );
    drop(held);
    assert!(http_get(addr, "/").is_ok_and(|r| r.status == 200));
}

/// Sets the soft descriptor limit of process `pid` to `soft` (the hard one left as it
/// is), returning the old soft limit.
fn set_soft_nofile(pid: u32, soft: u64) -> u64 {
    use nix::libc::{RLIMIT_NOFILE, pid_t, prlimit, rlimit};
    let mut old = rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: a plain system call on valid rlimit structs.
    let read = unsafe { prlimit(pid as pid_t, RLIMIT_NOFILE, std::ptr::null(), &mut old) };
    assert_eq!(
        read,
        0,
        "read the limit: {}",
        std::io::Error::last_os_error()
    );
    let new = rlimit {
        rlim_cur: soft,
        rlim_max: old.rlim_max,
    };
    // SAFETY: as above.
    let set = unsafe { prlimit(pid as pid_t, RLIMIT_NOFILE, &new, std::ptr::null_mut()) };
    assert_eq!(set, 0, "set the limit: {}", std::io::Error::last_os_error());
    old.rlim_cur
}

#[test]
fn accepts_that_run_out_of_descriptors_back_off_are_counted_and_recover() {
    let program = Program::start(
        "hello",
        &[
            ("HOST", "127.0.0.1"),
            ("PORT", "0"),
            ("WIX_CLUSTER_WORKERS", "1"),
        ],
    );
    let addr = program.listening_addr();
    let worker = program.wait_for_workers(1)[0];
    program.wait_for_200(addr, "/");
    let management = program.management_addr();
    // The worker may open no descriptor more than it has: every accept fails (EMFILE).
    let open = wix_cluster_suite::open_fds(worker) as u64;
    let old = set_soft_nofile(worker, open);
    let held: Vec<TcpStream> = (0..8)
        .filter_map(|_| TcpStream::connect(addr).ok())
        .collect();
    assert!(!held.is_empty(), "no connection reached the queue");
    let accept_errors = || {
        http_get(management, "/metrics")
            .ok()
            .and_then(|page| {
                page.body.lines().find_map(|line| {
                    let rest = line.strip_prefix("wix_cluster_worker_accept_errors_total{")?;
                    rest.rsplit_once(' ')?.1.parse::<f64>().ok()
                })
            })
            .unwrap_or(0.0)
    };
    // Counted (the worker's heartbeat carries the count) and logged.
    assert!(
        wait_until(PATIENCE, || accept_errors() >= 2.0),
        "accept errors counted: {}",
        accept_errors()
    );
    program.wait_for_log("Too many open files");
    // Backing off, not spinning: at 50 ms a try, a second gives about 20, not thousands.
    let before = accept_errors();
    std::thread::sleep(Duration::from_secs(2));
    let per_second = (accept_errors() - before) / 2.0;
    assert!(
        per_second <= 100.0,
        "{per_second} failed accepts a second: spinning"
    );
    // With descriptors again, the queued connections and new ones are served by the
    // same worker: nothing was lost or replaced.
    set_soft_nofile(worker, old);
    drop(held);
    program.wait_for_200(addr, "/");
    program.assert_workers_stay(&[worker], "the worker short of descriptors was replaced");
}
