//! Supervision under real load: respawn, cyclic death, start-up failure, a panicking
//! worker replaced at once while it drains, graceful drain, rolling restart, scaling.

use std::collections::HashSet;
use std::time::Duration;

use nix::sys::signal::Signal;
use wix_cluster_suite::{Load, PATIENCE, Program, http_get, is_alive, send_signal, wait_until};

fn flaky(extra: &[(&str, &str)]) -> Program {
    let mut env = vec![("PORT", "0"), ("WIX_CLUSTER_WORKERS", "2")];
    env.extend_from_slice(extra);
    Program::start("flaky", &env)
}

fn pid_of(response: std::io::Result<wix_cluster_suite::Response>) -> u32 {
    let response = response.expect("request served");
    assert_eq!(response.status, 200, "{response:?}");
    response.body.parse().expect("a pid in the body")
}

#[test]
fn kill_9_of_a_worker_under_load_is_replaced_and_the_port_keeps_serving() {
    let program = flaky(&[]);
    let addr = program.listening_addr();
    let before: HashSet<u32> = program.wait_for_workers(2).into_iter().collect();
    let load = Load::start(addr, 4, "/");
    std::thread::sleep(Duration::from_millis(500));

    let victim = *before.iter().next().expect("a worker");
    send_signal(victim, Signal::SIGKILL);
    let replaced = wait_until(PATIENCE, || {
        let now: HashSet<u32> = program.workers().into_iter().collect();
        now.len() == 2 && !now.contains(&victim)
    });
    assert!(replaced, "no replacement");
    let after: HashSet<u32> = program.workers().into_iter().collect();
    let replacement = *after.difference(&before).next().expect("a new pid");
    // Keep the load on until the replacement serves too.
    let served = wait_until(PATIENCE, || pid_of(http_get(addr, "/")) == replacement);
    let report = load.stop();
    assert!(served, "the replacement never served");
    eprintln!("kill -9 under load: {report}");
    // Only requests in flight on the killed worker may fail: at most one per client.
    assert!(report.failed.len() <= 4, "{:?}", report.failed);
    assert!(report.ok > 0);
    program.wait_for_log("died unexpectedly (signal SIGKILL)");
}

#[test]
fn crash_on_start_gives_up_with_the_apps_error_and_exits_non_zero() {
    let mut program = flaky(&[("CRASH_ON_START", "1"), ("MAX_DEATHS", "3")]);
    let status = program.wait_exit(PATIENCE).expect("the master gives up");
    let log = program.log();
    assert_ne!(status.code(), Some(0));
    assert!(
        status.code().is_some(),
        "the master must exit, not be killed"
    );
    assert!(log.contains("failed to start app: CRASH_ON_START is set, refusing to start"));
    let worker_pids: HashSet<&str> = log
        .lines()
        .filter_map(|line| line.strip_prefix("[worker="))
        .filter_map(|rest| rest.split(" pid=").nth(1)?.split(']').next())
        .collect();
    assert!(
        !worker_pids.is_empty() && worker_pids.len() <= 2,
        "spawned {worker_pids:?}; at most the 2 configured workers may start"
    );
}

/// A keep-alive HTTP/1.1 connection: it stays with the worker that accepted it.
struct Conn {
    reader: std::io::BufReader<std::net::TcpStream>,
}

impl Conn {
    fn open(addr: std::net::SocketAddr) -> Conn {
        let stream = std::net::TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(PATIENCE))
            .expect("read timeout");
        Conn {
            reader: std::io::BufReader::new(stream),
        }
    }

    fn send(&mut self, path: &str) {
        use std::io::Write;
        write!(
            self.reader.get_mut(),
            "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        .expect("send");
    }

    /// The status and body of the next response.
    fn response(&mut self) -> std::io::Result<(u16, String)> {
        use std::io::{BufRead, Read};
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("status line {line:?}")))?;
        let mut length = 0;
        loop {
            line.clear();
            self.reader.read_line(&mut line)?;
            if line.trim().is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body)?;
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }

    fn get(&mut self, path: &str) -> (u16, String) {
        self.send(path);
        self.response().expect("a response")
    }
}

#[test]
fn a_panicking_worker_is_replaced_at_once_and_drains() {
    let program = flaky(&[]);
    let addr = program.listening_addr();
    program.wait_for_workers(2);
    program.wait_for_200(addr, "/");
    // Two keep-alive connections held by one worker (of three, two share a worker).
    let mut by_pid: std::collections::HashMap<String, Vec<Conn>> = Default::default();
    let (pid, mut conns) = loop {
        let mut conn = Conn::open(addr);
        let (status, pid) = conn.get("/");
        assert_eq!(status, 200);
        let conns = by_pid.entry(pid.clone()).or_default();
        conns.push(conn);
        if conns.len() == 2 {
            let conns = by_pid.remove(&pid).expect("just filled");
            break (pid, conns);
        }
    };
    let victim: u32 = pid.parse().expect("a pid");
    // A slow request in flight on it, then a panic in another of its requests: the
    // worker announces it is going down and drains while its successor starts.
    conns[0].send("/slow?ms=4000");
    program.wait_for_requests_in_flight(1);
    conns[1].send("/die");
    program.wait_for_log("is going down: panicked at");
    let (status, body) = conns[0].response().expect("the slow request's answer");
    assert_eq!(
        (status, body.as_str()),
        (200, pid.as_str()),
        "the panicked worker's request in flight completes"
    );

    // The successor was started before the panicked worker exited.
    let mut events = Vec::new();
    let seen = wait_until(PATIENCE, || {
        events = http_get(program.management_addr(), "/events")
            .ok()
            .and_then(|r| serde_json::from_str::<serde_json::Value>(&r.body).ok())
            .and_then(|v| v["events"].as_array().cloned())
            .unwrap_or_default();
        events
            .iter()
            .any(|e| e["kind"] == "exit" && e["worker"]["pid"] == victim)
    });
    assert!(seen, "no exit of {victim}: {events:?}");
    let seq = |kind: &str, pid: u32| {
        events
            .iter()
            .find(|e| e["kind"] == kind && e["worker"]["pid"] == pid)
            .and_then(|e| e["seq"].as_u64())
    };
    let victim_forked = seq("fork", victim).expect("the victim's fork");
    let exited = seq("exit", victim).expect("its exit");
    let slot = events
        .iter()
        .find(|e| e["worker"]["pid"] == victim)
        .map(|e| e["worker"]["id"].clone())
        .expect("the victim's slot");
    let successor_forked = events
        .iter()
        .filter(|e| e["kind"] == "fork" && e["worker"]["id"] == slot)
        .filter_map(|e| e["seq"].as_u64())
        .filter(|&forked| forked > victim_forked)
        .min();
    assert!(
        successor_forked.is_some_and(|forked| forked < exited),
        "the successor must start before the panicked worker exits: {events:?}"
    );
    program.wait_for_steady_workers(2);
    for _ in 0..10 {
        pid_of(http_get(addr, "/"));
    }
}

#[test]
fn rolling_restart_under_load_changes_every_pid_and_fails_no_request() {
    let program = flaky(&[]);
    let addr = program.listening_addr();
    let before: HashSet<u32> = program.wait_for_workers(2).into_iter().collect();
    let load = Load::start(addr, 4, "/");
    std::thread::sleep(Duration::from_millis(500));
    program.signal(Signal::SIGHUP);
    program.wait_for_log("rolling restart done");
    let after: HashSet<u32> = program.wait_for_workers(2).into_iter().collect();
    // Keep the load on until a new worker has served.
    let served = wait_until(PATIENCE, || after.contains(&pid_of(http_get(addr, "/"))));
    std::thread::sleep(Duration::from_millis(300));
    let report = load.stop();
    eprintln!("rolling restart under load: {report}");
    assert!(served);
    assert!(
        after.is_disjoint(&before),
        "before {before:?}, after {after:?}"
    );
    assert!(
        report.failed.is_empty(),
        "failed requests: {:?}",
        report.failed
    );
    assert!(report.ok > 0);
    for pid in &before {
        assert!(!is_alive(*pid), "old worker {pid} still alive");
    }
}

#[test]
fn ready_timeout_gives_up_on_a_slow_successor_and_the_old_workers_keep_serving() {
    // Every worker takes 3 s to listen; a successor may take 1 s.
    let program = flaky(&[
        ("START_DELAY_MS", "3000"),
        ("WIX_CLUSTER_READY_TIMEOUT", "1s"),
    ]);
    let addr = program.listening_addr();
    let before: HashSet<u32> = program.wait_for_workers(2).into_iter().collect();
    program.wait_for_log("all 2 workers ready");
    program.signal(Signal::SIGHUP);
    let line = program.wait_for_log("rolling restart stopped at");
    assert!(
        line.contains("not ready within 1s") && line.contains("the old workers keep serving"),
        "{line}"
    );
    // The late successor is killed; the old workers are the cluster again.
    let back = wait_until(PATIENCE, || {
        program.workers().into_iter().collect::<HashSet<u32>>() == before
    });
    assert!(back, "children {:?}, before {before:?}", program.workers());
    for _ in 0..10 {
        assert!(before.contains(&pid_of(http_get(addr, "/"))));
    }
    assert!(!program.log().contains("rolling restart done"));
}

#[test]
fn sigterm_lets_a_slow_request_finish_then_the_master_exits_0() {
    let mut program = flaky(&[]);
    let addr = program.listening_addr();
    program.wait_for_workers(2);
    let slow = std::thread::spawn(move || http_get(addr, "/slow?ms=3000"));
    program.wait_for_requests_in_flight(1);
    program.signal(Signal::SIGTERM);
    let response = slow
        .join()
        .expect("client thread")
        .expect("the slow request completes");
    assert_eq!(response.status, 200);
    program.assert_exits_with(0);
    assert!(!program.log().contains("did not stop within"));
}

#[test]
fn a_second_sigterm_kills_the_draining_workers_at_once() {
    // A drain that would take a minute: the slow request holds it.
    let mut program = flaky(&[("DRAIN_TIMEOUT_MS", "60000")]);
    let addr = program.listening_addr();
    let workers = program.wait_for_workers(2);
    let slow = std::thread::spawn(move || http_get(addr, "/slow?ms=60000"));
    program.wait_for_requests_in_flight(1);
    program.signal(Signal::SIGTERM);
    program.wait_for_log("SIGTERM: stopping 2 workers gracefully");
    program.signal(Signal::SIGTERM);
    program.wait_for_log("SIGTERM again: killing every worker now");
    // The master exits (a graceful stop's code) without waiting for the drain, and the
    // request in flight is cut.
    program.assert_exits_with(0);
    for pid in &workers {
        assert!(!is_alive(*pid), "worker {pid} outlived the second SIGTERM");
    }
    let cut = slow.join().expect("client thread");
    assert!(
        cut.as_ref().map_or(true, |r| r.status != 200),
        "the slow request completed: {cut:?}"
    );
}

#[test]
fn a_worker_that_ignores_shutdown_is_killed_after_the_timeout() {
    let mut program = flaky(&[("IGNORE_SHUTDOWN", "1"), ("DRAIN_TIMEOUT_MS", "1000")]);
    program.listening_addr();
    let workers = program.wait_for_workers(2);
    program.signal(Signal::SIGTERM);
    program.assert_exits_with(0);
    program.wait_for_log("did not stop within 1s; killing it");
    for pid in workers {
        assert!(!is_alive(pid));
    }
}

#[test]
fn sigttin_and_sigttou_scale_the_worker_count() {
    let program = flaky(&[]);
    let addr = program.listening_addr();
    program.wait_for_workers(2);
    program.signal(Signal::SIGTTIN);
    program.wait_for_workers(3);
    program.signal(Signal::SIGTTOU);
    program.wait_for_workers(2);
    program.signal(Signal::SIGTTOU);
    let one = program.wait_for_steady_workers(1);
    // Never below one.
    program.signal(Signal::SIGTTOU);
    program.wait_for_log_count("SIGTTOU: scaling to 1 workers", 2);
    program.assert_workers_stay(&one, "scaled below one");
    pid_of(http_get(addr, "/"));
}

#[test]
fn cyclic_death_with_the_default_policy_keeps_survivors_serving() {
    let program = flaky(&[("MAX_DEATHS", "2")]);
    let addr = program.listening_addr();
    program.wait_for_workers(2);
    // Three unannounced deaths in a row: more than 2 within 10 s.
    for death in 1..=3 {
        let _ = http_get(addr, "/exit");
        program.wait_for_log_count("died unexpectedly", death);
    }
    program.wait_for_log("cyclic death: 3 worker deaths within 10s");
    assert!(is_alive(program.pid()), "the master must keep running");
    // A survivor serves: one request, right after the cyclic death (a retry loop of
    // 30 s would outlast the 10 s window and be answered by the retried slot).
    let response = http_get(addr, "/").expect("a survivor answers");
    assert_eq!(response.status, 200, "{response:?}");
}

#[test]
fn cyclic_death_with_the_exit_policy_stops_the_cluster_non_zero() {
    let mut program = flaky(&[("MAX_DEATHS", "2"), ("CYCLIC_POLICY", "exit")]);
    let addr = program.listening_addr();
    program.wait_for_workers(2);
    for death in 1..=3 {
        let _ = http_get(addr, "/exit");
        program.wait_for_log_count("died unexpectedly", death);
    }
    program.assert_exits_with(1);
    program.wait_for_log("policy Exit: stopping the cluster");
}

#[test]
fn idle_keep_alive_connections_do_not_hold_a_draining_worker() {
    use std::io::{Read, Write};
    let mut program = flaky(&[("DRAIN_TIMEOUT_MS", "60000")]);
    let addr = program.listening_addr();
    program.wait_for_workers(2);
    // Keep-alive connections, each with one answered request, then idle.
    let mut idle: Vec<std::net::TcpStream> = (0..4)
        .map(|_| {
            let mut stream = std::net::TcpStream::connect(addr).expect("connect");
            stream
                .set_read_timeout(Some(Duration::from_secs(30)))
                .expect("timeout");
            write!(stream, "GET / HTTP/1.1\r\nHost: x\r\n\r\n").expect("request");
            let mut buf = [0u8; 512];
            let n = stream.read(&mut buf).expect("response");
            assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
            stream
        })
        .collect();
    program.signal(Signal::SIGTERM);
    // The server closes each idle connection instead of waiting 60 s for it.
    for stream in &mut idle {
        let mut rest = Vec::new();
        let closed = stream.read_to_end(&mut rest);
        assert!(
            closed.is_ok(),
            "the connection was not closed cleanly: {closed:?}"
        );
    }
    // Well before the drain timeout: PATIENCE is half of it.
    program.assert_exits_with(0);
    assert!(!program.log().contains("drain timed out"));
}

#[test]
fn a_busy_keep_alive_connection_is_told_to_close_when_its_worker_drains() {
    let program = flaky(&[]);
    let addr = program.listening_addr();
    program.wait_for_workers(2);
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let first = keep_alive_get(&mut stream).expect("the first response");
    assert!(!first.contains("connection: close"), "{first}");
    // A rolling restart drains every worker, the one holding this connection too. A
    // client that keeps the connection busy (as a load generator does) must be told
    // `connection: close` in a response, never find the connection closed under its
    // next request.
    program.signal(Signal::SIGHUP);
    let deadline = std::time::Instant::now() + PATIENCE;
    let mut answered = 1;
    loop {
        let response = keep_alive_get(&mut stream).unwrap_or_else(|e| {
            panic!(
                "request {} on the keep-alive connection failed ({e}): closed without \
                 `connection: close`",
                answered + 1
            )
        });
        answered += 1;
        if response.contains("\r\nconnection: close\r\n") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never told to close");
    }
    let mut rest = Vec::new();
    use std::io::Read;
    stream
        .read_to_end(&mut rest)
        .expect("the server closes the connection cleanly after that response");
    assert!(rest.is_empty(), "{rest:?}");
    program.wait_for_log("rolling restart done");
}

/// `GET /` on an open keep-alive connection; the response's head and body, lowercased.
fn keep_alive_get(stream: &mut std::net::TcpStream) -> std::io::Result<String> {
    use std::io::{Read, Write};
    write!(stream, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let text = String::from_utf8_lossy(&raw).to_ascii_lowercase();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|line| line.strip_prefix("content-length:"))
                .and_then(|n| n.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if raw.len() >= end + 4 + length {
                return Ok(text);
            }
        }
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        raw.extend_from_slice(&buf[..n]);
    }
}
