//! Every signal has a decided meaning: stray ones (logrotate's SIGUSR1, a terminal's
//! SIGWINCH) never end the cluster, signals sent to the whole process group do what the
//! master does with them and nothing more, and a group-wide stop is one graceful stop.

use nix::sys::signal::Signal;
use wix_cluster_suite::{PATIENCE, Program, group_members, http_get, is_alive, wait_until};

fn start() -> (Program, std::net::SocketAddr) {
    let program = Program::start("flaky", &[("PORT", "0"), ("WIX_CLUSTER_WORKERS", "2")]);
    let addr = program.listening_addr();
    program.wait_for_workers(2);
    program.wait_for_200(addr, "/");
    (program, addr)
}

/// The master is alive, answers on the port with 200, and has exactly `workers`
/// throughout [`wix_cluster_suite::STEADY`].
fn assert_unchanged(program: &Program, addr: std::net::SocketAddr, workers: &[u32]) {
    assert!(is_alive(program.pid()), "the master died");
    let response = http_get(addr, "/").expect("the port serves");
    assert_eq!(response.status, 200, "{response:?}");
    program.assert_workers_stay(workers, "after the signals");
    assert!(is_alive(program.pid()), "the master died");
}

#[test]
fn sigusr1_and_sigwinch_to_the_master_change_nothing() {
    let (program, addr) = start();
    let workers = program.workers();
    program.signal(Signal::SIGUSR1);
    program.wait_for_log("SIGUSR1: logs go to stderr");
    program.signal(Signal::SIGWINCH);
    // The master ignores SIGWINCH (discarded when sent); a second SIGUSR1 handled says
    // the master was still there after it.
    program.signal(Signal::SIGUSR1);
    program.wait_for_log_count("SIGUSR1: logs go to stderr", 2);
    assert_unchanged(&program, addr, &workers);
}

/// A `/proc/<pid>/status` signal mask field (`SigBlk`, `SigIgn`) as a bit set.
fn signal_mask(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(":"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .expect("a mask")
}

#[test]
fn sigusr1_and_sigwinch_to_the_whole_group_change_nothing() {
    let (program, addr) = start();
    let workers = program.workers();
    // Each signal once its predecessor was handled (a pending signal would merge).
    program.signal_group(Signal::SIGUSR1);
    program.wait_for_log_count("SIGUSR1: logs go to stderr", 1);
    program.signal_group(Signal::SIGWINCH);
    program.signal_group(Signal::SIGTTIN);
    program.wait_for_log("SIGTTIN: scaling to 3 workers");
    program.signal_group(Signal::SIGUSR1);
    program.wait_for_log_count("SIGUSR1: logs go to stderr", 2);
    // SIGTTIN reached the master too: one worker more, the old ones untouched; the new
    // one, which the second SIGUSR1 may have reached before its handlers existed, too.
    let three = program.wait_for_steady_workers(3);
    assert!(workers.iter().all(|pid| three.contains(pid)), "{three:?}");
    // Held while a worker starts, the signals are neither blocked nor ignored once it
    // runs (the programs an app starts inherit both).
    let ours = [
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGTTIN,
        Signal::SIGTTOU,
        Signal::SIGWINCH,
        Signal::SIGTERM,
        Signal::SIGQUIT,
    ]
    .iter()
    .fold(0u64, |bits, signal| bits | 1 << (*signal as i32 - 1));
    for pid in &three {
        let blocked = signal_mask(*pid, "SigBlk") & ours;
        assert_eq!(blocked, 0, "worker {pid} blocks signals");
        let ignored = signal_mask(*pid, "SigIgn") & ours;
        assert_eq!(ignored, 0, "worker {pid} ignores signals");
    }
    program.signal_group(Signal::SIGTTOU);
    program.wait_for_workers(2);
    assert_unchanged(&program, addr, &workers);
    assert!(!program.log().contains("died unexpectedly"));
}

#[test]
fn sighup_to_the_whole_group_is_one_rolling_restart_with_the_worker_count_unchanged() {
    let (program, addr) = start();
    let before = program.workers();
    program.signal_group(Signal::SIGHUP);
    program.wait_for_log("rolling restart done");
    let after = program.wait_for_workers(2);
    assert!(after.iter().all(|pid| !before.contains(pid)), "{after:?}");
    assert_unchanged(&program, addr, &after);
    let log = program.log();
    assert_eq!(log.matches("rolling restart of").count(), 1);
    assert!(!log.contains("died unexpectedly"));
}

/// A group-wide `signal` with a slow request in flight: the request completes, the
/// master exits 0 with no worker left, and no worker was replaced on the way.
fn a_group_wide_stop_is_one_graceful_stop(signal: Signal) {
    let (mut program, addr) = start();
    let slow = std::thread::spawn(move || http_get(addr, "/slow?ms=3000"));
    program.wait_for_requests_in_flight(1);
    program.signal_group(signal);
    let response = slow.join().expect("slow request thread");
    let response = response.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(response.status, 200, "{response:?}");
    program.assert_exits_with(0);
    let gone = wait_until(PATIENCE, || group_members(program.pid()).is_empty());
    assert!(gone, "left: {:?}", group_members(program.pid()));
    let log = program.log();
    assert!(!log.contains("respawning worker"), "a worker was replaced");
    assert!(!log.contains("is going down"), "a worker was failing");
}

#[test]
fn a_group_wide_sigterm_finishes_the_slow_request_and_exits_0_with_no_worker_left() {
    a_group_wide_stop_is_one_graceful_stop(Signal::SIGTERM);
}

#[test]
fn a_group_wide_sigint_finishes_the_slow_request_and_exits_0_with_no_worker_left() {
    a_group_wide_stop_is_one_graceful_stop(Signal::SIGINT);
}

#[test]
fn a_group_wide_sigquit_is_a_graceful_stop_too() {
    a_group_wide_stop_is_one_graceful_stop(Signal::SIGQUIT);
}

#[test]
fn sigquit_to_the_master_stops_the_cluster_gracefully() {
    let (mut program, addr) = start();
    let slow = std::thread::spawn(move || http_get(addr, "/slow?ms=3000"));
    program.wait_for_requests_in_flight(1);
    program.signal(Signal::SIGQUIT);
    let response = slow.join().expect("slow request thread").expect("answered");
    assert_eq!(response.status, 200, "{response:?}");
    program.assert_exits_with(0);
    program.wait_for_log("SIGQUIT: stopping 2 workers gracefully");
}

#[test]
fn sigterm_to_one_worker_still_replaces_it() {
    let (program, addr) = start();
    let workers = program.workers();
    wix_cluster_suite::send_signal(workers[0], Signal::SIGTERM);
    let mut now = Vec::new();
    let replaced = wait_until(PATIENCE, || {
        now = program.workers();
        now.len() == 2 && !now.contains(&workers[0])
    });
    assert!(replaced, "{now:?}");
    assert!(is_alive(program.pid()));
    assert_eq!(http_get(addr, "/").expect("serves").status, 200);
}
