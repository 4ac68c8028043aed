//! The exchange between real master and worker processes (the `exchange_probe` fixture
//! program), and the same scenarios in single-process mode.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;

use nix::sys::signal::Signal;
use wix_cluster_suite::{PATIENCE, Program, http_get, wait_until};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Cluster,
    Single,
}

fn probe(mode: Mode) -> (Program, SocketAddr) {
    let mut env = vec![("PORT", "0"), ("WIX_CLUSTER_WORKERS", "2")];
    if mode == Mode::Single {
        env.push(("WIX_CLUSTER_SINGLE", "1"));
    }
    let program = Program::start_fixture("exchange_probe", &env);
    let addr = program.listening_addr();
    if mode == Mode::Cluster {
        program.wait_for_workers(2);
    }
    // Every worker ready, so on the exchange: a process that exists may not have said
    // hello yet, and a broadcast reaches only the workers that have.
    program.wait_for_200(program.management_addr(), "/health/ready");
    (program, addr)
}

/// `GET path`: the answering pid and the rest of the body.
fn get(addr: SocketAddr, path: &str) -> (u32, String) {
    let response = http_get(addr, path).expect("served");
    assert_eq!(response.status, 200, "{response:?}");
    let (pid, rest) = response
        .body
        .split_once(' ')
        .unwrap_or((&response.body, ""));
    (pid.parse().expect("a pid first"), rest.to_owned())
}

/// Asks `path` until every one of `pids` has answered; returns each one's answer.
fn from_each(addr: SocketAddr, path: &str, pids: &HashSet<u32>) -> HashMap<u32, String> {
    let mut answers = HashMap::new();
    let all = wait_until(PATIENCE, || {
        let (pid, body) = get(addr, path);
        answers.insert(pid, body);
        pids.iter().all(|pid| answers.contains_key(pid))
    });
    assert!(all, "not every worker answered {path}: {answers:?}");
    answers
}

fn serving_pids(program: &Program, mode: Mode) -> HashSet<u32> {
    match mode {
        Mode::Cluster => program.workers().into_iter().collect(),
        Mode::Single => HashSet::from([program.pid()]),
    }
}

/// The pid of slot `id`'s running process, from the management app's `/workers`.
fn pid_of_slot(program: &Program, id: u32) -> u32 {
    let management = program.management_addr();
    let mut pid = None;
    let found = wait_until(PATIENCE, || {
        let rows = http_get(management, "/workers")
            .ok()
            .and_then(|r| serde_json::from_str::<serde_json::Value>(&r.body).ok())
            .and_then(|v| v["workers"].as_array().cloned())
            .unwrap_or_default();
        pid = rows
            .iter()
            .filter(|row| row["id"] == id && row["state"] != "exited")
            .filter(|row| row["state"] != "draining")
            .filter_map(|row| row["pid"].as_u64())
            .next_back();
        pid.is_some()
    });
    assert!(found, "no process in slot {id}");
    pid.unwrap_or_default() as u32
}

/// Every pid in `pids` whose `/notes` have `note`, once at least one has (waiting up to
/// [`PATIENCE`]), then again after any stray copy could have arrived (the notes of
/// every worker are read twice more).
fn reached_by(addr: SocketAddr, pids: &HashSet<u32>, note: &str) -> HashSet<u32> {
    let mut reached = HashSet::new();
    let look = |reached: &mut HashSet<u32>| {
        for (pid, notes) in from_each(addr, "/notes", pids) {
            if notes.split(',').any(|n| n == note) {
                reached.insert(pid);
            }
        }
    };
    let delivered = wait_until(PATIENCE, || {
        look(&mut reached);
        !reached.is_empty()
    });
    assert!(delivered, "{note} reached no worker");
    // A copy sent to another worker would have been sent with this one: by the time
    // each worker has answered twice more, it has landed.
    look(&mut reached);
    look(&mut reached);
    reached
}

fn worker_to_master(mode: Mode) {
    let (program, _addr) = probe(mode);
    for pid in serving_pids(&program, mode) {
        program.wait_for_log(&format!("pid {pid}"));
    }
    let line = program.wait_for_log("master got hello from");
    let expected = match mode {
        Mode::Cluster => "from Worker(WorkerId(",
        Mode::Single => "from Worker(WorkerId(0))",
    };
    assert!(line.contains(expected), "{line}");
}

fn master_to_all_workers(mode: Mode) {
    let (program, addr) = probe(mode);
    let pids = serving_pids(&program, mode);
    get(addr, "/ask/broadcast?text=hello-all");
    let reached = wait_until(PATIENCE, || {
        from_each(addr, "/notes", &pids)
            .values()
            .all(|notes| notes.split(',').any(|n| n == "hello-all"))
    });
    assert!(reached);
}

fn master_to_one_worker(mode: Mode) {
    let (program, addr) = probe(mode);
    let pids = serving_pids(&program, mode);
    let target = match mode {
        Mode::Cluster => 2,
        Mode::Single => 0,
    };
    let addressed = match mode {
        Mode::Cluster => pid_of_slot(&program, target),
        Mode::Single => program.pid(),
    };
    get(addr, &format!("/ask/send-to?worker={target}&text=just-you"));
    let reached = reached_by(addr, &pids, "just-you");
    assert_eq!(
        reached,
        HashSet::from([addressed]),
        "send_to worker {target} (pid {addressed}) reached {reached:?}"
    );
}

fn topics_are_isolated(mode: Mode) {
    let (program, addr) = probe(mode);
    let pids = serving_pids(&program, mode);
    get(addr, "/ask/broadcast?text=on-notes");
    get(addr, "/ask/other?text=on-others");
    let arrived = wait_until(PATIENCE, || {
        let notes = from_each(addr, "/notes", &pids);
        let others = from_each(addr, "/others", &pids);
        notes.values().all(|n| n.contains("on-notes"))
            && others.values().all(|o| o.contains("on-others"))
    });
    assert!(arrived);
    for notes in from_each(addr, "/notes", &pids).values() {
        assert!(!notes.contains("on-others"), "{notes}");
    }
    for others in from_each(addr, "/others", &pids).values() {
        assert!(!others.contains("on-notes"), "{others}");
    }
}

fn request_response(mode: Mode) {
    let (_program, addr) = probe(mode);
    assert_eq!(get(addr, "/add?a=2&b=40").1, "42");
}

fn request_timeout(mode: Mode) {
    let (_program, addr) = probe(mode);
    let (_, answer) = get(addr, "/slow?ms=3000");
    assert!(
        answer.contains("error: request on topic \"probe.slow\" got no answer within 1s"),
        "{answer}"
    );
    // A request within the timeout is answered.
    assert_eq!(get(addr, "/slow?ms=10").1, "10");
}

fn app_data_is_there_before_the_app_and_refreshes_everywhere(mode: Mode) {
    let (program, addr) = probe(mode);
    let pids = serving_pids(&program, mode);
    for answer in from_each(addr, "/config", &pids).values() {
        assert_eq!(answer, "start=1 now=1");
    }
    get(addr, "/ask/refresh");
    let refreshed = wait_until(PATIENCE, || {
        from_each(addr, "/config", &pids)
            .values()
            .all(|a| a.ends_with("now=2"))
    });
    assert!(refreshed);
    if mode == Mode::Cluster {
        // A worker spawned after the refresh has the current value before its app runs.
        let before: HashSet<u32> = program.workers().into_iter().collect();
        program.signal(Signal::SIGTTIN);
        let newcomer: HashSet<u32> = program
            .wait_for_workers(3)
            .into_iter()
            .filter(|pid| !before.contains(pid))
            .collect();
        let answers = from_each(addr, "/config", &newcomer);
        for pid in &newcomer {
            assert_eq!(answers[pid], "start=2 now=2", "newcomer {pid}");
        }
    }
}

fn corrupted_payloads_are_dropped_and_counted(mode: Mode) {
    let (program, addr) = probe(mode);
    let pids = serving_pids(&program, mode);
    // Worker -> master: the master drops it, logs the topic, and carries on.
    get(addr, "/garbage");
    program.wait_for_log("dropping a message on topic \"probe.hello\"");
    get(addr, "/ask/broadcast?text=still-fine");
    // Master -> workers: each worker drops it, counts it, and carries on.
    get(addr, "/ask/garbage");
    let counted = wait_until(PATIENCE, || {
        from_each(addr, "/undecodable", &pids)
            .values()
            .all(|count| count.parse::<u64>().is_ok_and(|n| n >= 1))
    });
    assert!(counted);
    assert!(
        from_each(addr, "/notes", &pids)
            .values()
            .all(|n| n.contains("still-fine"))
    );
    assert_eq!(get(addr, "/add?a=1&b=1").1, "2");
    assert!(wix_cluster_suite::is_alive(program.pid()));
}

macro_rules! in_both_modes {
    ($($scenario:ident),* $(,)?) => {
        mod cluster {
            $(#[test] fn $scenario() { super::$scenario(super::Mode::Cluster) })*
        }
        mod single_process {
            $(#[test] fn $scenario() { super::$scenario(super::Mode::Single) })*
        }
    };
}

in_both_modes!(
    worker_to_master,
    master_to_all_workers,
    master_to_one_worker,
    topics_are_isolated,
    request_response,
    request_timeout,
    app_data_is_there_before_the_app_and_refreshes_everywhere,
    corrupted_payloads_are_dropped_and_counted,
);

/// A rolling restart whose first successor completes its handshake and then fails: the
/// roll stops, and the old workers (one of them shared its slot with the failed
/// successor for a moment) still get broadcasts and app data.
#[test]
fn after_a_failed_handover_the_old_workers_still_get_broadcasts_and_app_data() {
    let program = Program::start_fixture(
        "exchange_probe",
        &[
            ("PORT", "0"),
            ("WIX_CLUSTER_WORKERS", "2"),
            ("FAIL_FROM_GENERATION", "1"),
        ],
    );
    let addr = program.listening_addr();
    let pids: HashSet<u32> = program.wait_for_workers(2).into_iter().collect();
    program.signal(Signal::SIGHUP);
    program.wait_for_log("rolling restart stopped");
    let old: Vec<u32> = pids.iter().copied().collect();
    program.assert_workers_stay(&old, "the old workers keep serving");
    get(addr, "/ask/broadcast?text=after-the-failed-handover");
    let reached = wait_until(PATIENCE, || {
        from_each(addr, "/notes", &pids)
            .values()
            .all(|notes| notes.split(',').any(|n| n == "after-the-failed-handover"))
    });
    assert!(reached, "a broadcast missed a worker");
    get(addr, "/ask/refresh");
    let refreshed = wait_until(PATIENCE, || {
        from_each(addr, "/config", &pids)
            .values()
            .all(|answer| answer.ends_with("now=2"))
    });
    assert!(refreshed, "app data missed a worker");
    // `send_to` reaches the slot whose successor failed, and only it.
    let slot_one = pid_of_slot(&program, 1);
    get(addr, "/ask/send-to?worker=1&text=slot-one");
    let reached = reached_by(addr, &pids, "slot-one");
    assert_eq!(
        reached,
        HashSet::from([slot_one]),
        "send_to slot 1 reached {reached:?}"
    );
}

/// `/blob` of every worker in `pids`, until each says what `expected` accepts.
fn blobs_settle(addr: SocketAddr, pids: &HashSet<u32>, expected: impl Fn(&str) -> bool) {
    let mut answers = HashMap::new();
    // Up to hundreds of MiB decoded by each worker, in a debug build, on a busy machine.
    let settled = wait_until(4 * PATIENCE, || {
        answers = from_each(addr, "/blob", pids);
        answers.values().all(|answer| expected(answer))
    });
    assert!(settled, "{answers:?}");
}

#[test]
fn sixteen_mib_of_app_data_reaches_every_worker_respawns_and_refreshes() {
    let mib16 = (16 << 20).to_string();
    let program = Program::start_fixture(
        "exchange_probe",
        &[
            ("PORT", "0"),
            ("WIX_CLUSTER_WORKERS", "2"),
            ("BLOB_MB", "16"),
        ],
    );
    let addr = program.listening_addr();
    let pids: HashSet<u32> = program.wait_for_workers(2).into_iter().collect();
    let start = format!("start={mib16} now={mib16} version=1 ok=true");
    blobs_settle(addr, &pids, |answer| answer == start);

    // A worker killed afterwards is replaced, and its replacement has the data before
    // its app runs.
    let victim = *pids.iter().next().expect("a worker");
    wix_cluster_suite::send_signal(victim, Signal::SIGKILL);
    let mut now = Vec::new();
    let replaced = wait_until(PATIENCE, || {
        now = program.workers();
        now.len() == 2 && !now.contains(&victim)
    });
    assert!(replaced, "{now:?}");
    let pids: HashSet<u32> = now.into_iter().collect();
    blobs_settle(addr, &pids, |answer| {
        answer.starts_with(&format!("start={mib16} now={mib16}")) && answer.ends_with("ok=true")
    });

    // A refresh of that size reaches every worker.
    get(addr, "/ask/blob?mb=16");
    blobs_settle(addr, &pids, |answer| {
        answer.ends_with(&format!("now={mib16} version=2 ok=true"))
    });

    // Past the limit: an error from publish, nothing changes, and workers still start.
    get(addr, "/ask/blob?mb=200");
    let line = program.wait_for_log("master could not do what");
    assert!(line.contains("more than the exchange carries"), "{line}");
    assert!(
        line.len() < 1000,
        "a log line must not carry a payload: {} bytes",
        line.len()
    );
    program.signal(Signal::SIGTTIN);
    let three: HashSet<u32> = program.wait_for_workers(3).into_iter().collect();
    blobs_settle(addr, &three, |answer| {
        answer.ends_with(&format!("now={mib16} version=2 ok=true"))
    });
}

#[test]
fn sixty_four_mib_of_app_data_is_there_before_every_workers_app_runs() {
    let mib64 = (64 << 20).to_string();
    let program = Program::start_fixture(
        "exchange_probe",
        &[
            ("PORT", "0"),
            ("WIX_CLUSTER_WORKERS", "2"),
            ("BLOB_MB", "64"),
        ],
    );
    let addr = program.listening_addr();
    let pids: HashSet<u32> = program.wait_for_workers(2).into_iter().collect();
    let expected = format!("start={mib64} now={mib64} version=1 ok=true");
    blobs_settle(addr, &pids, |answer| answer == expected);
}

#[test]
fn back_to_back_app_data_leaves_every_worker_with_the_newest_value() {
    let program = Program::start_fixture(
        "exchange_probe",
        &[("PORT", "0"), ("WIX_CLUSTER_WORKERS", "2")],
    );
    let addr = program.listening_addr();
    let pids: HashSet<u32> = program.wait_for_workers(2).into_iter().collect();
    // Three values of 100 MiB, published faster than a worker reads them: each worker
    // ends with the third (version 4), whatever its backlog held meanwhile.
    get(addr, "/ask/blobs?count=3&mb=100");
    // 300 MiB made, encoded and sent by a debug build: 7 s on a quiet machine, past
    // PATIENCE when two suites share its 2 cores.
    program.wait_for_log_within("master did what", 4 * PATIENCE);
    let newest = format!("now={} version=4 ok=true", 100 << 20);
    blobs_settle(addr, &pids, |answer| answer.ends_with(&newest));
    // Nobody was replaced for it.
    let now: HashSet<u32> = program.workers().into_iter().collect();
    assert_eq!(now, pids, "workers were replaced");
}
