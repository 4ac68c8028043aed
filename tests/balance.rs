//! Fair accepting: a few long-lived keep-alive connections opened at once spread over
//! every worker (a worker holding more than its fair share of the cluster's open
//! connections leaves the next one to the others) instead of piling onto whichever
//! worker woke first; a worker killed with its share is replaced and its clients'
//! new connections go to the replacement; a stopped worker strands no connection;
//! keep-alive connections a worker held before a scale-up are shed (each closed after
//! a response that says so) until the new worker holds its share.
//! Against `hello`, whose responses name the pid of the worker that served them.

use std::collections::BTreeMap;
use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
    /// The last response said `connection: close`: the server closes it.
    closing: bool,
}

impl KeepAlive {
    fn open(addr: SocketAddr) -> KeepAlive {
        let stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(PATIENCE))
            .expect("read timeout");
        KeepAlive {
            reader: BufReader::new(stream),
            closing: false,
        }
    }

    /// `GET /` on this connection: the pid of the worker that answered.
    fn get(&mut self) -> std::io::Result<u32> {
        Ok(self.request()?.0)
    }

    /// `GET /` on this connection: the pid of the worker that answered, and whether
    /// the response said `connection: close` (the server closes the connection after it).
    fn request(&mut self) -> std::io::Result<(u32, bool)> {
        self.reader
            .get_mut()
            .write_all(b"GET / HTTP/1.1\r\nHost: balance\r\n\r\n")?;
        let head = wix_cluster_suite::read_ok_head(&mut self.reader)?;
        let header = |name: &str| head.iter().find(|(n, _)| n == name).map(|(_, v)| v);
        let pid = header("x-worker-pid").and_then(|v| v.parse::<u32>().ok());
        let length = header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let closing = header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body)?;
        let pid = pid.ok_or_else(|| std::io::Error::other("no x-worker-pid"))?;
        self.closing = closing;
        Ok((pid, closing))
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
    // connection in, and no process crashes. The lie (2,048 idle workers) also makes
    // each worker shed all but 2 of its connections: responses say `connection:
    // close`, and clients that reconnect lose no request.
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
        if connection.closing {
            *connection = KeepAlive::open(addr);
            connection.get().expect("served after a shed");
        } else {
            assert_eq!(connection.get().expect("served again"), *pid);
        }
    }
    drop(connections);
    let clients = Clients::start(addr, 16);
    let mut reconnects = 0;
    let shed = wait_until(PATIENCE, || {
        reconnects = clients.seen(|seen| seen.reconnects);
        reconnects >= 16
    });
    let seen = clients.stop();
    assert!(
        shed,
        "the lie made the workers shed {reconnects} connections"
    );
    assert_eq!(seen.failures, 0, "requests failed: {:?}", seen.failed);
    assert!(
        seen.served_by.values().sum::<u64>() > 0,
        "nothing served: {:?}",
        seen.served_by
    );
    eprintln!(
        "with the board scribbled on: {} reconnects, served by {:?}",
        seen.reconnects, seen.served_by
    );
    assert!(wix_cluster_suite::is_alive(program.pid()), "the master");
    program.assert_workers_stay(&pids, "no worker crashed");
}

/// What a [`Clients`] pool saw.
#[derive(Default)]
struct Seen {
    /// The worker each connection is on: the pid that answered its last request.
    on: Vec<Option<u32>>,
    /// Requests answered 200, by the pid that answered.
    served_by: BTreeMap<u32, u64>,
    /// Responses that said `connection: close`, after which the client reconnected.
    reconnects: u64,
    /// Requests that failed (connect errors, a connection closed without a response,
    /// another status than 200), with what went wrong for the first few.
    failures: u64,
    failed: Vec<String>,
}

impl Seen {
    /// How many of the connections each of `workers` is on (every worker listed).
    fn held(&self, workers: &[u32]) -> BTreeMap<u32, usize> {
        let mut held: BTreeMap<u32, usize> = workers.iter().map(|&pid| (pid, 0)).collect();
        for pid in self.on.iter().flatten() {
            *held.entry(*pid).or_default() += 1;
        }
        held
    }

    fn failed(&mut self, what: String) {
        self.failures += 1;
        if self.failed.len() < 10 {
            self.failed.push(what);
        }
    }
}

/// `n` keep-alive connections, each from a thread of its own sending `GET /` every
/// [`Clients::PACE`] and opening a new connection whenever a response says
/// `connection: close` (what a well-behaved HTTP/1.1 client does).
struct Clients {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Seen>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Clients {
    const PACE: Duration = Duration::from_millis(10);

    fn start(addr: SocketAddr, n: usize) -> Clients {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Seen {
            on: vec![None; n],
            ..Seen::default()
        }));
        let threads = (0..n)
            .map(|i| {
                let (stop, seen) = (stop.clone(), seen.clone());
                std::thread::spawn(move || Clients::run(addr, i, &stop, &seen))
            })
            .collect();
        Clients {
            stop,
            seen,
            threads,
        }
    }

    /// Connection `i`'s client, until `stop`.
    fn run(addr: SocketAddr, i: usize, stop: &AtomicBool, seen: &Mutex<Seen>) {
        let mut connection: Option<KeepAlive> = None;
        while !stop.load(Ordering::Relaxed) {
            let result = match connection.as_mut() {
                Some(current) => current.request(),
                None => match TcpStream::connect(addr) {
                    Ok(stream) => {
                        let _ = stream.set_read_timeout(Some(PATIENCE));
                        let current = connection.insert(KeepAlive {
                            reader: BufReader::new(stream),
                            closing: false,
                        });
                        current.request()
                    }
                    Err(e) => Err(e),
                },
            };
            let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
            match result {
                Ok((pid, closing)) => {
                    seen.on[i] = Some(pid);
                    *seen.served_by.entry(pid).or_default() += 1;
                    if closing {
                        seen.reconnects += 1;
                        connection = None;
                    }
                }
                Err(e) => {
                    seen.failed(e.to_string());
                    connection = None;
                }
            }
            drop(seen);
            std::thread::sleep(Clients::PACE);
        }
    }

    /// `look` at what the clients saw so far.
    fn seen<T>(&self, look: impl FnOnce(&Seen) -> T) -> T {
        look(&self.seen.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Stops the clients (each after its current request) and returns what they saw.
    fn stop(self) -> Seen {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads {
            thread.join().expect("client thread");
        }
        std::mem::take(&mut *self.seen.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// The cluster's `wix_cluster_connections_shed_total`, if `/metrics` has it.
fn shed_total(program: &Program) -> Option<f64> {
    let page = http_get(program.management_addr(), "/metrics").ok()?;
    page.body
        .lines()
        .find_map(|line| line.strip_prefix("wix_cluster_connections_shed_total "))
        .and_then(|value| value.trim().parse().ok())
}

#[test]
fn keep_alive_connections_held_before_a_scale_up_spread_to_the_new_worker() {
    // 16 keep-alive connections, all on the one worker there is, busy with requests;
    // then a second worker. Fair accepting alone would leave all 16 where they are (no
    // client opens a new connection): the first worker must close its excess ones,
    // each after a response that says so, and the clients' new connections go to the
    // new worker.
    const CONNECTIONS: usize = 16;
    let program = hello("1", "5s");
    let addr = program.listening_addr();
    let first = program.wait_for_workers(1)[0];
    let clients = Clients::start(addr, CONNECTIONS);
    let mut last = BTreeMap::new();
    let all_on_first = wait_until(PATIENCE, || {
        last = clients.seen(|seen| seen.held(&[first]));
        last.get(&first) == Some(&CONNECTIONS)
    });
    assert!(
        all_on_first,
        "the 16 connections are not all served: {last:?}"
    );

    program.signal(Signal::SIGTTIN);
    let workers = program.wait_for_workers(2);
    let second = workers
        .iter()
        .copied()
        .find(|&pid| pid != first)
        .expect("a second worker");
    let spread = |held: &BTreeMap<u32, usize>| held.values().all(|n| (6..=10).contains(n));
    let began = Instant::now();
    let mut served_by_second = 0;
    let spread_out = wait_until(PATIENCE, || {
        (last, served_by_second) = clients.seen(|seen| {
            (
                seen.held(&workers),
                seen.served_by.get(&second).copied().unwrap_or(0),
            )
        });
        served_by_second > 0 && spread(&last)
    });
    assert!(
        spread_out,
        "after the scale-up the connections are {last:?} (pid: connections; {second} is \
         new, and served {served_by_second} requests)"
    );
    eprintln!(
        "spread {last:?} {:?} after the second worker was seen",
        began.elapsed()
    );
    // And they stay spread: the slack keeps the workers from passing connections back
    // and forth.
    let reconnects_then = clients.seen(|seen| seen.reconnects);
    let window = Instant::now();
    while window.elapsed() < wix_cluster_suite::STEADY {
        let held = clients.seen(|seen| seen.held(&workers));
        assert!(spread(&held), "no longer spread: {held:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let seen = clients.stop();
    eprintln!(
        "{} reconnects ({} in the steady window), served by {:?}",
        seen.reconnects,
        seen.reconnects - reconnects_then,
        seen.served_by
    );
    assert_eq!(
        seen.failures, 0,
        "requests failed: {:?} ({} reconnects)",
        seen.failed, seen.reconnects
    );
    // 7 were over the first worker's share and slack (16 - 9): a few more at most
    // (one shed as a tick read counts not yet updated), never a churn.
    assert!(
        seen.reconnects < CONNECTIONS as u64,
        "{} reconnects for 16 connections",
        seen.reconnects
    );
    // The shedding worker counted what the clients saw.
    let mut shed = None;
    let counted = wait_until(PATIENCE, || {
        shed = shed_total(&program);
        shed == Some(seen.reconnects as f64)
    });
    assert!(
        counted,
        "wix_cluster_connections_shed_total is {shed:?}, the clients reconnected {} times",
        seen.reconnects
    );
}
