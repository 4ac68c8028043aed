//! Watch mode, the development loop: the master watches its program file and, when a
//! build replaces it, upgrades the cluster to the new build without closing the port; a
//! build that fails to start leaves the old one serving. The process that was started
//! stays (a keeper) while the cluster runs, as a terminal or `cargo run` expects.

use std::time::Duration;

use nix::sys::signal::Signal;
use wix_cluster_suite::{
    Load, PATIENCE, Program, Scratch, children_of, example_path, fixture_path, group_members,
    http_get, is_alive, wait_until,
};

const ENV: [(&str, &str); 4] = [
    ("HOST", "127.0.0.1"),
    ("PORT", "0"),
    ("WIX_CLUSTER_WORKERS", "2"),
    ("WIX_CLUSTER_WATCH", "1"),
];

#[test]
fn rebuilding_the_binary_under_load_upgrades_the_cluster_with_no_failed_request() {
    let scratch = Scratch::new(env!("CARGO_TARGET_TMPDIR"), "watch-rebuild");
    let binary = scratch.deploy(&example_path("hello"), "app");
    let mut program = Program::start_path(&binary, &ENV);
    let first = program.wait_for_workers(2);
    let addr = program.listening_addr();
    program.wait_for_log("watch mode: upgrading the cluster whenever");
    assert_eq!(http_get(addr, "/").expect("serves").body, "Hi there");

    let load = Load::start(addr, 4, "/");
    std::thread::sleep(Duration::from_millis(500));
    // "A rebuild": a new program lands on the path (flaky answers with its pid).
    scratch.deploy(&example_path("flaky"), "app");
    let mut body = String::new();
    let new_code = wait_until(PATIENCE, || {
        body = http_get(addr, "/").map(|r| r.body).unwrap_or_default();
        body.parse::<u32>().is_ok()
    });
    std::thread::sleep(Duration::from_millis(500));
    let report = load.stop();
    assert!(new_code, "the new build never answered (last {body:?})");
    assert!(
        report.failed.is_empty(),
        "requests failed during the upgrade: {report}"
    );
    assert!(report.ok > 50, "too little load went through: {report}");

    // The process that was started stays; the cluster runs in its new master.
    let masters = children_of(program.pid());
    assert_eq!(masters.len(), 1, "{masters:?}");
    let mut workers = Vec::new();
    let rolled = wait_until(PATIENCE, || {
        workers = children_of(masters[0]);
        workers.len() == 2
    });
    assert!(rolled, "{workers:?}");
    assert!(
        workers.iter().all(|pid| !first.contains(pid)),
        "{workers:?} {first:?}"
    );

    // A SIGTERM to that process stops the whole cluster, exit 0.
    program.signal(Signal::SIGTERM);
    program.assert_exits_with(0);
    let gone = wait_until(PATIENCE, || group_members(program.pid()).is_empty());
    assert!(gone, "left: {:?}", group_members(program.pid()));
}

#[test]
fn a_build_that_fails_to_start_leaves_the_old_cluster_serving() {
    let scratch = Scratch::new(env!("CARGO_TARGET_TMPDIR"), "watch-broken");
    let binary = scratch.deploy(&example_path("hello"), "app");
    let program = Program::start_path(&binary, &ENV);
    let workers = program.wait_for_workers(2);
    let addr = program.listening_addr();
    program.wait_for_log("watch mode: upgrading the cluster whenever");

    let staged = scratch.path("broken");
    std::fs::write(&staged, "#!/bin/sh\necho 'broken build' >&2\nexit 3\n").expect("write");
    let mode = std::os::unix::fs::PermissionsExt::from_mode(0o755);
    std::fs::set_permissions(&staged, mode).expect("chmod");
    std::fs::rename(&staged, &binary).expect("rename into place");
    let line = program.wait_for_log("upgrade failed");
    assert!(line.contains("keeps serving"), "{line}");
    // STEADY (1.5 s) is longer than a retry would take: the watch's poll (250 ms), its
    // settle time (500 ms) and one more poll.
    program.assert_workers_stay(&workers, "a failed build changes no worker");
    assert_eq!(http_get(addr, "/").expect("serves").body, "Hi there");
    // Not retried while the file stays the same.
    assert_eq!(program.log().matches("upgrade failed").count(), 1);

    // A killed worker comes back as the build the cluster runs, not the broken file on
    // disk (which would make a crash loop of a healthy cluster).
    wix_cluster_suite::send_signal(workers[0], Signal::SIGKILL);
    let mut now = Vec::new();
    let replaced = wait_until(PATIENCE, || {
        now = program.workers();
        now.len() == 2 && !now.contains(&workers[0])
    });
    assert!(replaced, "worker {} not replaced: {now:?}", workers[0]);
    for pid in &now {
        let exe = wix_cluster_suite::exe_of(*pid);
        assert!(
            exe.to_string_lossy().ends_with("app (deleted)"),
            "worker {pid} runs {exe:?}"
        );
    }
    assert_eq!(http_get(addr, "/").expect("serves").body, "Hi there");
    assert!(
        !program.log().contains("died unexpectedly (exit code 3)"),
        "a worker ran the broken file"
    );
}

#[test]
fn the_keeper_ignores_the_orphans_it_adopts_for_signals_and_its_exit_status() {
    let scratch = Scratch::new(env!("CARGO_TARGET_TMPDIR"), "watch-orphans");
    let binary = scratch.deploy(&fixture_path("starts_programs"), "app");
    let mut env = ENV.to_vec();
    env.push(("ORPHAN", "1"));
    let mut program = Program::start_path(&binary, &env);
    // Not `wait_for_workers`: this master, the subreaper, adopts its workers' orphans.
    program.wait_for_200(program.listening_addr(), "/");
    program.wait_for_log("watch mode: upgrading the cluster whenever");

    // A rebuild (the same program, a new file): this process stays as the keeper, and
    // the later masters' workers leave orphans (exiting 42 on TERM, HUP or USR1) that
    // the keeper, their subreaper, adopts.
    scratch.deploy(&fixture_path("starts_programs"), "app");
    program.new_master_pid();
    program.wait_for_log("this process stays until it ends");
    // Another rebuild: the keeper hears of the master its successor starts, which
    // becomes its child once that successor has exited.
    std::thread::sleep(Duration::from_millis(1000));
    scratch.deploy(&fixture_path("starts_programs"), "app");
    let mut master = 0;
    let upgraded_twice = wait_until(PATIENCE, || {
        let log = program.log();
        let second = log.split("upgraded: the new master (pid ").nth(2);
        master = second
            .and_then(|rest| rest.split(')').next())
            .and_then(|pid| pid.parse().ok())
            .unwrap_or(0);
        master != 0 && children_of(program.pid()).contains(&master)
    });
    assert!(
        upgraded_twice,
        "no second upgrade handed over to a child of the keeper"
    );
    // The newest workers' orphans are there; the older workers' have ended with their
    // groups.
    let mut orphans = Vec::new();
    let adopted = wait_until(PATIENCE, || {
        orphans = children_of(program.pid());
        orphans.retain(|pid| *pid != master);
        program.log().matches("left an orphan").count() >= 6 && orphans.len() == 2
    });
    let _cleanup = KillOnDrop(orphans.clone());
    assert!(adopted, "the keeper adopted {orphans:?}");

    // Forwarded to the master, not to them.
    program.signal(Signal::SIGUSR1);
    let heard = wait_until(PATIENCE, || {
        program
            .log()
            .lines()
            .any(|line| line.contains(&format!("pid={master}")) && line.contains("SIGUSR1"))
    });
    assert!(heard, "the current master never got the forwarded SIGUSR1");
    std::thread::sleep(Duration::from_millis(500));
    let dead: Vec<u32> = orphans
        .iter()
        .copied()
        .filter(|pid| !is_alive(*pid))
        .collect();
    assert!(dead.is_empty(), "the keeper signalled the orphans {dead:?}");

    // The cluster stops (the orphans end with their workers' groups, exiting 42): the
    // keeper's status is its master's.
    program.signal(Signal::SIGTERM);
    program.assert_exits_with(0);
}

/// Sends SIGKILL to the processes it names when dropped (a failed test's orphans).
struct KillOnDrop(Vec<u32>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        for pid in &self.0 {
            if is_alive(*pid) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(*pid as i32),
                    Signal::SIGKILL,
                );
            }
        }
    }
}
