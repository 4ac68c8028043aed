//! Fair accepting: a few long-lived keep-alive connections opened at once spread over
//! every worker (a worker holding more than its fair share of the cluster's open
//! connections leaves the next one to the others) instead of piling onto whichever
//! worker woke first; a worker killed with its share is replaced and its clients'
//! new connections go to the replacement; a stopped worker strands no connection.
//! Against `hello`, whose responses name the pid of the worker that served them.

use std::collections::BTreeMap;
use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};

use nix::sys::signal::Signal;
use wix_cluster_suite::{PATIENCE, Program, http_get, send_signal, wait_until};

/// How many rounds of opening connections a spreading test runs: the first worker to
/// wake took more than its share often but not always, so one round could pass by luck.
const ROUNDS: usize = 5;

/// `hello` with `workers` workers on a loopback port of its own. Fair accepting's
/// safety valve (a worker over its share takes a connection anyway once it waited this
/// long in the queue) is set far beyond any scheduling delay of a busy machine, so that
/// what these tests see is the sharing rule itself; the valve has a test of its own.
fn hello(workers: &str, accept_wait: &str) -> Program {
    let program = Program::start(
        "hello",
        &[
            ("PORT", "0"),
            ("HOST", "127.0.0.1"),
            ("WIX_CLUSTER_WORKERS", workers),
            ("WIX_CLUSTER_ACCEPT_WAIT", accept_wait),
        ],
    );
    program.wait_for_log(&format!("all {workers} workers ready"));
    program
}

/// A keep-alive HTTP/1.1 connection.
struct KeepAlive {
    reader: BufReader<TcpStream>,
}

impl KeepAlive {
    fn open(addr: SocketAddr) -> KeepAlive {
        let stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(PATIENCE))
            .expect("read timeout");
        KeepAlive {
            reader: BufReader::new(stream),
        }
    }

    /// `GET /` on this connection: the pid of the worker that answered.
    fn get(&mut self) -> std::io::Result<u32> {
        self.reader
            .get_mut()
            .write_all(b"GET / HTTP/1.1\r\nHost: balance\r\n\r\n")?;
        let head = wix_cluster_suite::read_ok_head(&mut self.reader)?;
        let header = |name: &str| head.iter().find(|(n, _)| n == name).map(|(_, v)| v);
        let pid = header("x-worker-pid").and_then(|v| v.parse::<u32>().ok());
        let length = header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body)?;
        pid.ok_or_else(|| std::io::Error::other("no x-worker-pid"))
    }
}

/// Opens `n` connections at once (all connected before the first request), sends a
/// request on each, and returns them with the pid that answered each.
fn open_at_once(addr: SocketAddr, n: usize) -> Vec<(KeepAlive, u32)> {
    let mut connections: Vec<KeepAlive> = (0..n).map(|_| KeepAlive::open(addr)).collect();
    connections
        .iter_mut()
        .map(|connection| connection.get().expect("served"))
        .collect::<Vec<_>>()
        .into_iter()
        .zip(connections)
        .map(|(pid, connection)| (connection, pid))
        .collect()
}

/// How many of `connections` each of `workers` holds (every worker listed, 0 if none).
fn per_worker(workers: &[u32], connections: &[(KeepAlive, u32)]) -> BTreeMap<u32, usize> {
    let mut held: BTreeMap<u32, usize> = workers.iter().map(|&pid| (pid, 0)).collect();
    for (_, pid) in connections {
        *held.entry(*pid).or_default() += 1;
    }
    held
}

/// The sum of the workers' `http_server_open_connections` gauges.
fn open_connections(program: &Program) -> Option<f64> {
    let page = http_get(program.management_addr(), "/metrics").ok()?;
    Some(
        page.body
            .lines()
            .filter(|line| line.starts_with("http_server_open_connections{"))
            .filter_map(|line| line.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum(),
    )
}

/// Waits until the workers hold no connection (each has seen its clients close).
fn wait_for_no_connections(program: &Program) {
    let mut last = None;
    let closed = wait_until(PATIENCE, || {
        last = open_connections(program);
        last == Some(0.0)
    });
    assert!(closed, "the workers still hold connections: {last:?}");
}

/// `ROUNDS` times: `per_worker * workers` connections opened at once land
/// `per_worker` on each worker, and stay there (a second request on each is served by
/// the same worker).
fn spreads_evenly(workers: usize, each: usize) {
    let program = hello(&workers.to_string(), "5s");
    let addr = program.listening_addr();
    let pids = program.wait_for_workers(workers);
    for round in 1..=ROUNDS {
        wait_for_no_connections(&program);
        let mut connections = open_at_once(addr, workers * each);
        let held = per_worker(&pids, &connections);
        assert!(
            held.values().all(|&n| n == each),
            "round {round}: {} connections on {workers} workers held {held:?} (pid: \
             connections), expected {each} each",
            workers * each
        );
        for (connection, pid) in &mut connections {
            assert_eq!(connection.get().expect("served again"), *pid, "kept alive");
        }
    }
}

#[test]
fn eight_connections_opened_at_once_on_four_workers_are_two_on_each() {
    spreads_evenly(4, 2);
}

#[test]
fn four_connections_opened_at_once_on_two_workers_are_two_on_each() {
    spreads_evenly(2, 2);
}

#[test]
fn a_killed_workers_clients_reconnect_to_its_replacement() {
    let program = hello("4", "5s");
    let addr = program.listening_addr();
    let pids = program.wait_for_workers(4);
    let mut connections = open_at_once(addr, 8);
    let held = per_worker(&pids, &connections);
    assert!(held.values().all(|&n| n == 2), "held {held:?}");

    let victim = pids[0];
    send_signal(victim, Signal::SIGKILL);
    let mut replacement = None;
    let replaced = wait_until(PATIENCE, || {
        let now = program.workers();
        replacement = now.iter().copied().find(|pid| !pids.contains(pid));
        now.len() == 4 && replacement.is_some()
    });
    assert!(replaced, "no replacement for {victim}");
    let replacement = replacement.expect("a replacement");
    // The replacement holds nothing and every other worker its share: once it accepts,
    // a new connection is its (each other worker would hold more than its share).
    let mut last = None;
    let accepting = wait_until(PATIENCE, || {
        last = http_get(addr, "/")
            .ok()
            .and_then(|r| r.header("x-worker-pid")?.parse::<u32>().ok());
        last == Some(replacement)
    });
    assert!(
        accepting,
        "the replacement {replacement} never answered (last: {last:?})"
    );

    // The victim's clients find their connections closed and open new ones.
    let mut reconnected = 0;
    for (connection, pid) in &mut connections {
        if *pid != victim {
            continue;
        }
        assert!(
            connection.get().is_err(),
            "a connection to the killed worker"
        );
        *connection = KeepAlive::open(addr);
        *pid = connection.get().expect("served after reconnecting");
        reconnected += 1;
    }
    assert_eq!(reconnected, 2);
    let now = program.workers();
    let held = per_worker(&now, &connections);
    assert!(
        held.values().all(|&n| n == 2),
        "after the reconnects: {held:?}, expected 2 each ({replacement} replaced {victim})"
    );
}

#[test]
fn a_stopped_worker_strands_no_connection() {
    // The default safety valve: a worker over its share takes a connection anyway once
    // it waited in the queue for a moment, so that the only worker allowed to take it
    // being stopped (or busy) strands nothing.
    let program = Program::start(
        "hello",
        &[
            ("PORT", "0"),
            ("HOST", "127.0.0.1"),
            ("WIX_CLUSTER_WORKERS", "2"),
        ],
    );
    program.wait_for_log("all 2 workers ready");
    let addr = program.listening_addr();
    let pids = program.wait_for_workers(2);
    let mut connections = vec![];
    // One each, so that the stopped worker is under its share from the start.
    let spread = wait_until(PATIENCE, || {
        connections.extend(open_at_once(addr, 2));
        let held = per_worker(&pids, &connections);
        if held.values().all(|&n| n > 0) {
            return true;
        }
        connections.clear();
        false
    });
    assert!(spread, "two connections never reached both workers");
    let stopped = pids[0];
    send_signal(stopped, Signal::SIGSTOP);
    for _ in 0..4 {
        let mut connection = KeepAlive::open(addr);
        let pid = connection.get().expect("served with a worker stopped");
        assert_eq!(pid, pids[1]);
        connections.push((connection, pid));
    }
    send_signal(stopped, Signal::SIGCONT);
    let held = per_worker(&pids, &connections);
    assert!(held[&pids[1]] >= 5, "{held:?}");
}

#[test]
fn after_a_rolling_restart_the_new_workers_share_evenly() {
    // The old workers' slots on the board (draining, then gone) must not count: with
    // them counted, the new workers would each seem over their share early.
    let program = hello("4", "5s");
    let addr = program.listening_addr();
    let old = program.wait_for_workers(4);
    let connections = open_at_once(addr, 8);
    assert!(per_worker(&old, &connections).values().all(|&n| n == 2));
    program.signal(Signal::SIGHUP);
    let mut new = Vec::new();
    let rolled = wait_until(PATIENCE, || {
        new = program.workers();
        new.len() == 4 && new.iter().all(|pid| !old.contains(pid))
    });
    assert!(rolled, "not rolled: {new:?} (were {old:?})");
    program.wait_for_log("rolling restart done");
    drop(connections);
    wait_for_no_connections(&program);
    let connections = open_at_once(addr, 8);
    let held = per_worker(&new, &connections);
    assert!(held.values().all(|&n| n == 2), "after the roll: {held:?}");
}

#[test]
fn a_worker_scribbling_on_the_board_stops_no_worker_from_accepting() {
    // `board_vandal` rewrites the whole board every 100 ms: every slot an accepting,
    // live process with no connection, so that any worker holding one connection
    // seems over its share for good. The valve (its default) still lets each new
    // connection in, and no process crashes.
    let program = Program::start_fixture("board_vandal", &[("PORT", "0")]);
    program.wait_for_log("all 2 workers ready");
    let addr = program.listening_addr();
    let pids = program.wait_for_workers(2);
    let vandal = http_get(addr, "/vandalize").expect("vandalize");
    assert_eq!(vandal.status, 200, "{vandal:?}");
    program.wait_for_log("scribbled on the board");
    let mut connections = Vec::new();
    for _ in 0..6 {
        let mut connection = KeepAlive::open(addr);
        let pid = connection
            .get()
            .expect("served with the board scribbled on");
        connections.push((connection, pid));
    }
    connections.extend(open_at_once(addr, 6));
    for (connection, pid) in &mut connections {
        assert_eq!(connection.get().expect("served again"), *pid);
    }
    assert!(wix_cluster_suite::is_alive(program.pid()), "the master");
    program.assert_workers_stay(&pids, "no worker crashed");
}
