//! A cluster with no `plugins(...)` is a safe one: dead workers are replaced, a crash
//! loop is detected, a stalled worker is killed (the `defaults` example, written as
//! `#[wix_cluster::main(workers = 3)]`); `without(...)` turns a default off (the
//! `without_respawn` example); `workers = "auto"` follows the CPUs the process may use.

use std::time::Duration;

use nix::sys::signal::Signal;
use wix_cluster_suite::{PATIENCE, Program, http_get, send_signal, wait_until};

fn replaced(program: &Program, n: usize, gone: u32) -> Vec<u32> {
    let mut workers = Vec::new();
    let ok = wait_until(PATIENCE, || {
        workers = program.workers();
        workers.len() == n && !workers.contains(&gone)
    });
    assert!(ok, "{workers:?}");
    workers
}

/// The cluster's `n` workers once it has served (a worker killed before any is ready
/// is a failed start: the cluster stops, by design).
fn started(program: &Program, n: usize) -> Vec<u32> {
    program.wait_for_200(program.listening_addr(), "/");
    program.wait_for_workers(n)
}

#[test]
fn with_no_plugins_a_killed_worker_is_replaced() {
    let program = Program::start("defaults", &[("PORT", "0")]);
    let workers = started(&program, 3);
    send_signal(workers[1], Signal::SIGKILL);
    replaced(&program, 3, workers[1]);
    let addr = program.listening_addr();
    assert_eq!(http_get(addr, "/").map(|r| r.status).ok(), Some(200));
}

#[test]
fn with_no_plugins_a_crash_loop_is_detected() {
    let program = Program::start("defaults", &[("PORT", "0"), ("EXIT_AFTER_MS", "50")]);
    let workers = started(&program, 3);
    // The first generation lives; kill them so every slot loops.
    for pid in workers {
        send_signal(pid, Signal::SIGKILL);
    }
    let line = program.wait_for_log("cyclic death:");
    assert!(line.contains("more than 10"), "{line}");
    let management = program.management_addr();
    let alive = http_get(management, "/health/is_alive").expect("management app");
    assert_eq!(alive.status, 503, "{alive:?}");
}

#[test]
fn with_no_plugins_a_stalled_worker_is_killed_and_replaced() {
    let program = Program::start("defaults", &[("PORT", "0")]);
    let workers = started(&program, 3);
    let addr = program.listening_addr();
    // Block every worker's loop for longer than the default heartbeat timeout (30 s);
    // each is killed and replaced.
    let blockers: Vec<_> = (0..3)
        .map(|_| std::thread::spawn(move || http_get(addr, "/block?ms=60000")))
        .collect();
    let stalled = wait_until(Duration::from_secs(60), || {
        program.log().contains("stalled: no heartbeat")
    });
    assert!(stalled, "no stall detected");
    let mut now = Vec::new();
    let replaced = wait_until(PATIENCE, || {
        now = program.workers();
        now.len() == 3 && now.iter().any(|pid| !workers.contains(pid))
    });
    assert!(replaced, "{now:?}");
    drop(blockers);
}

#[test]
fn without_respawn_a_killed_worker_stays_dead() {
    let program = Program::start("without_respawn", &[("PORT", "0")]);
    let workers = started(&program, 3);
    send_signal(workers[0], Signal::SIGKILL);
    // The master saw the death; nothing replaces it (a respawn would come at once).
    program.wait_for_log("died unexpectedly");
    program.assert_workers_stay(&workers[1..], "without Respawn");
    assert!(!program.log().contains("respawning worker"));
}

#[test]
fn workers_auto_under_a_one_cpu_affinity_runs_one_worker() {
    let program = Program::start_wrapped(
        &["taskset", "--cpu-list", "0"],
        "hello",
        &[
            ("HOST", "127.0.0.1"),
            ("PORT", "0"),
            ("WIX_CLUSTER_WORKERS", "auto"),
        ],
    );
    program.wait_for_log("master started; spawning 1 workers");
    program.wait_for_steady_workers(1);
}
