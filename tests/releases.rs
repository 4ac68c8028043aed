//! Deployments as they are done: releases behind a `current` symlink, a program file
//! that goes away or is replaced, and worker spawns that fail for a while. Respawns run
//! the build the cluster runs, a roll moves it to the path it was started as, capacity
//! is never lost, and what failed is retried.

use nix::sys::signal::Signal;
use wix_cluster_suite::{
    PATIENCE, Program, Scratch, example_path, exe_of, http_get, send_signal, wait_until,
};

const ENV: [(&str, &str); 3] = [
    ("HOST", "127.0.0.1"),
    ("PORT", "0"),
    ("WIX_CLUSTER_WORKERS", "2"),
];

/// Waits until the master has exactly the workers `pids` none of which is in `old`,
/// returning them.
fn wait_for_new_workers(program: &Program, n: usize, old: &[u32]) -> Vec<u32> {
    let mut workers = Vec::new();
    let replaced = wait_until(PATIENCE, || {
        workers = program.workers();
        workers.len() == n && workers.iter().all(|pid| !old.contains(pid))
    });
    assert!(
        replaced,
        "expected {n} workers, none of {old:?}, have {workers:?}"
    );
    workers
}

fn assert_serves(program: &Program) {
    let addr = program.listening_addr();
    let response = http_get(addr, "/").expect("the app answers");
    assert_eq!(response.status, 200, "{response:?}");
}

#[test]
fn a_switched_current_link_deploys_the_new_release_and_respawns_survive_pruning() {
    let scratch = Scratch::new(env!("CARGO_TARGET_TMPDIR"), "releases-symlinked");
    let hello = example_path("hello");
    scratch.deploy(&hello, "releases/1/app");
    scratch.deploy(&hello, "releases/2/app");
    scratch.link("current", "releases/1");
    let program = Program::start_path(&scratch.path("current/app"), &ENV);
    let first = program.wait_for_workers(2);
    for pid in &first {
        assert!(
            exe_of(*pid).ends_with("releases/1/app"),
            "{:?}",
            exe_of(*pid)
        );
    }
    assert_serves(&program);

    // Deploy: switch the link, prune the old release, roll.
    scratch.link("current", "releases/2");
    std::fs::remove_dir_all(scratch.path("releases/1")).expect("prune release 1");
    program.signal(Signal::SIGHUP);
    program.wait_for_log("rolling restart done");
    let rolled = wait_for_new_workers(&program, 2, &first);
    for pid in &rolled {
        let exe = exe_of(*pid);
        assert!(exe.ends_with("releases/2/app"), "worker {pid} runs {exe:?}");
    }
    assert_serves(&program);

    // A worker killed after the old release is gone is replaced, from the new one.
    send_signal(rolled[0], Signal::SIGKILL);
    let after = wait_for_new_workers(&program, 2, &[rolled[0]]);
    for pid in &after {
        let exe = exe_of(*pid);
        assert!(exe.ends_with("releases/2/app"), "worker {pid} runs {exe:?}");
    }
    assert_serves(&program);
}

#[test]
fn with_the_program_file_gone_a_killed_worker_is_replaced_and_a_roll_stops_with_the_reason() {
    let scratch = Scratch::new(env!("CARGO_TARGET_TMPDIR"), "releases-removed");
    let binary = scratch.deploy(&example_path("hello"), "app");
    let program = Program::start_path(&binary, &ENV);
    let workers = program.wait_for_workers(2);
    // Served once: the cluster has started (a kill before that is a failed start).
    program.wait_for_200(program.listening_addr(), "/");
    std::fs::remove_file(&binary).expect("remove the program file");

    send_signal(workers[0], Signal::SIGKILL);
    let replaced = wait_for_new_workers(&program, 2, &[workers[0]]);
    for pid in &replaced {
        let exe = exe_of(*pid);
        assert!(
            exe.to_string_lossy().ends_with("app (deleted)"),
            "worker {pid} runs {exe:?}, not the build the cluster runs"
        );
    }
    assert_serves(&program);

    program.signal(Signal::SIGHUP);
    let line = program.wait_for_log("rolling restart stopped");
    assert!(
        line.contains("No such file or directory") && line.contains("keep serving"),
        "{line}"
    );
    program.assert_workers_stay(&replaced, "the workers keep serving");
    assert_serves(&program);

    // Not executable behaves the same for respawns: a file that is there but cannot run.
    std::fs::write(&binary, "not a program").expect("write a file that cannot run");
    send_signal(replaced[0], Signal::SIGKILL);
    wait_for_new_workers(&program, 2, &[replaced[0]]);
    assert_serves(&program);
}

#[test]
fn a_successor_that_cannot_be_started_is_not_a_death_of_its_slot() {
    let scratch = Scratch::new(env!("CARGO_TARGET_TMPDIR"), "releases-no-successor");
    let binary = scratch.deploy(&example_path("hello"), "app");
    let program = Program::start_path(&binary, &ENV);
    let workers = program.wait_for_steady_workers(2);
    program.wait_for_200(program.listening_addr(), "/");
    std::fs::remove_file(&binary).expect("remove the program file");

    // Twelve rolls, each stopped by a successor that cannot be started: were those
    // deaths of slot 1, Respawn's default (more than 10 within 10 s) would call it
    // cyclic death, and each would schedule a respawn of a slot whose worker is alive.
    for roll in 1..=12 {
        program.signal(Signal::SIGHUP);
        program.wait_for_log_count("rolling restart stopped", roll);
    }
    program.assert_workers_stay(&workers, "the workers keep serving");
    let log = program.log();
    assert!(
        !log.contains("respawning worker"),
        "a failed successor was counted as a death"
    );
    assert!(
        !log.contains("cyclic death"),
        "failed successors fed cyclic-death detection"
    );
    let alive = http_get(program.management_addr(), "/health/is_alive").expect("health");
    assert_eq!(alive.status, 200, "{alive:?}");
    // The event log says what happened, as a successor's failure.
    let events = http_get(program.management_addr(), "/events").expect("events");
    assert!(
        events.body.contains("cannot start a successor"),
        "{}",
        events.body
    );
    assert_serves(&program);
}

/// Whether some descriptor of process `pid` is open on `file` (or on its deleted copy).
fn has_fd_on(pid: u32, file: &std::path::Path) -> bool {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten().any(|fd| {
        std::fs::read_link(fd.path()).is_ok_and(|target| {
            target
                .to_string_lossy()
                .starts_with(&*file.to_string_lossy())
        })
    })
}

/// What the worker `pid` answers on `/`: waits for a response it served (hello names
/// its worker in `x-worker-pid`; a build that does not answers with its pid).
fn body_served_by(program: &Program, pid: u32) -> String {
    let addr = program.listening_addr();
    let mut body = None;
    let served = wait_until(PATIENCE, || {
        let Ok(response) = http_get(addr, "/") else {
            return false;
        };
        let by = response
            .header("x-worker-pid")
            .map_or_else(|| response.body.trim().to_owned(), str::to_owned);
        if by == pid.to_string() {
            body = Some(response.body.clone());
        }
        body.is_some()
    });
    assert!(served, "worker {pid} served nothing");
    body.unwrap_or_default()
}

#[test]
fn a_replaced_program_file_is_run_by_a_roll_and_never_by_a_respawn() {
    let scratch = Scratch::new(env!("CARGO_TARGET_TMPDIR"), "releases-replaced");
    let binary = scratch.deploy(&example_path("hello"), "app");
    let program = Program::start_path(&binary, &ENV);
    let workers = program.wait_for_workers(2);
    program.wait_for_200(program.listening_addr(), "/");
    // Another build in its place: `defaults` answers with its pid, not "Hi there".
    scratch.deploy(&example_path("defaults"), "app");

    send_signal(workers[0], Signal::SIGKILL);
    let respawned = wait_for_new_workers(&program, 2, &[workers[0]]);
    let replacement = respawned
        .iter()
        .copied()
        .find(|pid| *pid != workers[1])
        .expect("a replacement");
    let exe = exe_of(replacement);
    assert!(
        exe.to_string_lossy().ends_with("app (deleted)"),
        "the replacement runs {exe:?}, not the build the cluster runs"
    );
    assert_eq!(body_served_by(&program, replacement), "Hi there");
    for pid in &respawned {
        assert!(
            !has_fd_on(*pid, &binary),
            "worker {pid} inherited the held build"
        );
    }

    // A roll moves the cluster to the file on disk; respawns follow it from then on.
    program.signal(Signal::SIGHUP);
    program.wait_for_log("rolling restart done");
    let rolled = wait_for_new_workers(&program, 2, &respawned);
    for pid in &rolled {
        assert_eq!(exe_of(*pid), binary, "worker {pid} after the roll");
        assert_eq!(body_served_by(&program, *pid), pid.to_string());
    }
    send_signal(rolled[0], Signal::SIGKILL);
    let after = wait_for_new_workers(&program, 2, &[rolled[0]]);
    for pid in &after {
        assert_eq!(
            exe_of(*pid),
            binary,
            "worker {pid} respawned after the roll"
        );
    }
}

/// Sets the soft descriptor limit of process `pid`, returning the old one.
fn set_soft_nofile(pid: u32, soft: u64) -> u64 {
    let mut old = nix::libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain system call on two valid rlimit structs.
    let got = unsafe {
        nix::libc::prlimit(
            pid as nix::libc::pid_t,
            nix::libc::RLIMIT_NOFILE,
            std::ptr::null(),
            &mut old,
        )
    };
    assert_eq!(
        got,
        0,
        "read the limit: {}",
        std::io::Error::last_os_error()
    );
    let new = nix::libc::rlimit {
        rlim_cur: soft,
        rlim_max: old.rlim_max,
    };
    // SAFETY: as above.
    let set = unsafe {
        nix::libc::prlimit(
            pid as nix::libc::pid_t,
            nix::libc::RLIMIT_NOFILE,
            &new,
            std::ptr::null_mut(),
        )
    };
    assert_eq!(set, 0, "set the limit: {}", std::io::Error::last_os_error());
    old.rlim_cur
}

#[test]
fn a_spawn_that_fails_is_retried_until_the_cluster_has_its_workers_again() {
    let program = Program::start("hello", &ENV);
    let workers = program.wait_for_workers(2);
    let management = program.management_addr();
    assert_serves(&program);

    // No descriptor the master opens from now on can be numbered 3 or more: starting
    // a worker (its channel is a socketpair) fails with EMFILE.
    let restore = set_soft_nofile(program.pid(), 3);
    send_signal(workers[0], Signal::SIGKILL);
    let retried = wait_until(PATIENCE, || {
        program
            .log()
            .matches("cannot spawn worker 1: Too many open files")
            .count()
            >= 2
    });
    assert!(retried, "the spawn was not retried");
    assert_eq!(program.workers().len(), 1);

    set_soft_nofile(program.pid(), restore);
    wait_for_new_workers(&program, 2, &[workers[0]]);
    assert_serves(&program);
    let stats = program.wait_for_200(management, "/stats");
    let stats: serde_json::Value = serde_json::from_str(&stats.body).expect("JSON");
    let failed = stats["counters"]["spawn_failed"].as_u64().unwrap_or(0);
    assert!(failed >= 2, "{stats}");
    let metrics = program.wait_for_200(management, "/metrics").body;
    assert!(
        metrics.lines().any(
            |line| line.starts_with("wix_cluster_workers_spawn_failed_total ")
                && !line.ends_with(" 0")
        ),
        "{metrics}"
    );
    let ready = program.wait_for_200(management, "/health/ready");
    assert!(
        ready.body.contains("\"spawn_error\":null"),
        "{}",
        ready.body
    );
}
