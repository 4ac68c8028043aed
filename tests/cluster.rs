//! The cluster as users see it: the examples (and the fixture programs of the
//! test-support package) run as real processes.

use std::collections::HashSet;
use std::time::Duration;

use nix::sys::signal::Signal;
use wix_cluster_suite::{MANAGEMENT_LINE, PATIENCE, Program, http_get, is_alive, wait_until};

const LOOPBACK_PORT_0: [(&str, &str); 2] = [("HOST", "127.0.0.1"), ("PORT", "0")];

fn hello(extra: &[(&str, &str)]) -> Program {
    let mut env = LOOPBACK_PORT_0.to_vec();
    env.extend_from_slice(extra);
    Program::start("hello", &env)
}

/// Waits until the master has exactly `n` workers, the same ones for
/// [`wix_cluster_suite::STEADY`].
fn assert_children(program: &Program, n: usize) -> Vec<u32> {
    program.wait_for_steady_workers(n)
}

#[test]
fn master_runs_as_many_workers_as_the_macro_says() {
    let program = hello(&[]);
    program.listening_addr();
    assert_children(&program, 4);
}

#[test]
fn wix_cluster_workers_overrides_the_macro_count() {
    let program = hello(&[("WIX_CLUSTER_WORKERS", "3")]);
    program.listening_addr();
    assert_children(&program, 3);
}

#[test]
fn all_workers_answer_on_the_one_shared_port() {
    let program = hello(&[("WIX_CLUSTER_WORKERS", "2")]);
    let addr = program.listening_addr();
    let workers: HashSet<u32> = assert_children(&program, 2).into_iter().collect();
    let mut served_by = HashSet::new();
    let all_seen = wait_until(PATIENCE, || {
        // Many concurrent connections, so that both workers' accept loops get some.
        let handles: Vec<_> = (0..16)
            .map(|_| std::thread::spawn(move || http_get(addr, "/")))
            .collect();
        for handle in handles {
            let response = handle
                .join()
                .expect("client thread")
                .expect("request served");
            assert_eq!(response.status, 200);
            assert_eq!(response.body, "Hi there");
            let pid: u32 = response
                .header("x-worker-pid")
                .and_then(|pid| pid.parse().ok())
                .expect("x-worker-pid header");
            served_by.insert(pid);
        }
        served_by.len() > 1
    });
    assert!(all_seen, "only {served_by:?} answered");
    assert!(
        served_by.is_subset(&workers),
        "{served_by:?} answered, but the workers are {workers:?}"
    );
}

#[test]
fn port_0_picks_one_port_that_the_master_logs() {
    let program = hello(&[("WIX_CLUSTER_WORKERS", "2")]);
    let line = program.wait_for_log("listening on ");
    assert!(
        line.starts_with(&format!("[master pid={}]", program.pid())),
        "the address should come from the master: {line}"
    );
    let addr = program.listening_addr();
    assert_ne!(addr.port(), 0);
    assert_children(&program, 2);
    let response = http_get(addr, "/").expect("served on the logged port");
    assert_eq!(response.body, "Hi there");
    assert_eq!(
        program
            .log()
            .lines()
            .filter(|line| line.contains("listening on ") && !line.contains(MANAGEMENT_LINE))
            .count(),
        1,
        "the master binds once for all workers"
    );
}

#[test]
fn single_process_mode_serves_from_one_process() {
    let program = hello(&[("WIX_CLUSTER_SINGLE", "1")]);
    let addr = program.listening_addr();
    let response = http_get(addr, "/").expect("served");
    assert_eq!(response.body, "Hi there");
    assert_eq!(
        response.header("x-worker-pid"),
        Some(program.pid().to_string().as_str())
    );
    assert_eq!(response.header("x-worker-id"), Some("0"));
    assert!(
        program.children().is_empty(),
        "single-process mode spawned {:?}",
        program.children()
    );
}

#[test]
fn sigterm_stops_every_worker_gracefully_and_the_master_exits_0() {
    let mut program = hello(&[("WIX_CLUSTER_WORKERS", "2")]);
    let addr = program.listening_addr();
    let workers = assert_children(&program, 2);
    http_get(addr, "/").expect("served before the stop");
    program.signal(Signal::SIGTERM);
    program.assert_exits_with(0);
    for pid in &workers {
        assert!(!is_alive(*pid), "worker {pid} outlived the master");
    }
    let log = program.log();
    program.wait_for_log("SIGTERM: stopping 2 workers gracefully");
    for pid in &workers {
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| l.starts_with("[worker=") && l.contains(&format!(" pid={pid}]")))
            .collect();
        // Graceful: each worker was asked, stopped accepting, finished and exited on its
        // own; the master killed none.
        for step in [
            "the master asked this worker to stop",
            "draining: stopped accepting",
            "drained",
        ] {
            assert!(
                lines.iter().any(|l| l.contains(step)),
                "worker {pid} did not log {step:?}: {lines:?}"
            );
        }
    }
    assert!(!log.contains("did not stop within"), "a worker was killed");
    assert!(log.contains("every worker has stopped; master exiting"));
}

#[test]
fn sigkill_of_the_master_leaves_no_worker_after_1s() {
    let mut program = hello(&[("WIX_CLUSTER_WORKERS", "3")]);
    program.listening_addr();
    let workers = assert_children(&program, 3);
    program.signal(Signal::SIGKILL);
    program.wait_exit(PATIENCE).expect("the master dies");
    std::thread::sleep(Duration::from_secs(1));
    let alive: Vec<u32> = workers.into_iter().filter(|pid| is_alive(*pid)).collect();
    assert!(
        alive.is_empty(),
        "workers {alive:?} outlived a SIGKILLed master"
    );
}

#[test]
fn bad_worker_count_exits_2_with_one_clear_line_and_spawns_nothing() {
    for bad in ["abc", "0"] {
        let mut program = hello(&[("WIX_CLUSTER_WORKERS", bad)]);
        program.assert_exits_with(2);
        let log = program.log();
        let lines: Vec<&str> = log.lines().collect();
        assert_eq!(lines.len(), 1, "one line: {lines:?}");
        assert!(
            lines[0].contains(&format!("WIX_CLUSTER_WORKERS=\"{bad}\"")),
            "the line names the variable and value"
        );
        assert!(!log.contains("worker="), "no worker may have started");
    }
}

#[test]
fn a_worker_sending_garbage_is_dropped_while_the_others_keep_serving() {
    let program = Program::start_fixture("misbehaving_worker", &[("PORT", "0")]);
    let addr = program.listening_addr();
    let workers = assert_children(&program, 2);

    let culprit: u32 = http_get(addr, "/garbage")
        .expect("garbage endpoint")
        .body
        .parse()
        .expect("a pid");
    assert!(workers.contains(&culprit));
    // The misbehaving worker is dropped.
    program.wait_until_gone(culprit);
    program.wait_for_log("dropping it");

    // The master and the other worker never stopped serving.
    assert!(is_alive(program.pid()), "the master died");
    let survivor = workers.iter().find(|pid| **pid != culprit).copied();
    assert!(survivor.is_some_and(is_alive), "the other worker died");
    for _ in 0..20 {
        let response = http_get(addr, "/").expect("still served");
        assert_eq!(response.status, 200);
    }
    // Respawn fills the slot again.
    let refilled = wait_until(PATIENCE, || {
        let now = program.workers();
        now.len() == 2 && !now.contains(&culprit)
    });
    assert!(refilled, "the slot was not refilled");
}

#[test]
fn a_custom_plugin_notices_every_fork() {
    let env = [
        ("HOST", "127.0.0.1"),
        ("PORT", "0"),
        ("WIX_CLUSTER_WORKERS", "3"),
    ];
    let program = Program::start("custom_plugin", &env);
    program.listening_addr();
    let workers = assert_children(&program, 3);
    let noticed = wait_until(PATIENCE, || {
        program.log().matches("noticed a fork").count() == 3
    });
    assert!(noticed);
    let log = program.log();
    for pid in workers {
        assert!(
            log.contains(&format!("(pid {pid})")),
            "fork of {pid} not noticed"
        );
    }
}

#[test]
fn a_failing_master_plugin_stops_start_up_before_any_worker() {
    let mut program = Program::start_fixture("failing_plugin", &[]);
    program.assert_exits_with(1);
    let log = program.log();
    assert!(log.contains(
        "plugin NeedsGreeting failed to start: GREETING is not set; no worker was started"
    ));
    assert!(!log.contains("[worker="), "a worker started");
    assert!(!log.contains("listening on"));

    // The same program with the setting present starts its workers.
    let program = Program::start_fixture("failing_plugin", &[("GREETING", "hi")]);
    program.wait_for_log("greeting: hi");
    program.wait_for_workers(2);
}

#[test]
fn workers_never_see_the_admin_token_or_the_notify_socket() {
    let program = hello(&[
        ("WIX_CLUSTER_ADMIN_TOKEN", "s3cret-token"),
        ("NOTIFY_SOCKET", "/nonexistent/notify.sock"),
    ]);
    let workers = assert_children(&program, 4);
    for pid in &workers {
        let environ = wix_cluster_suite::environ_of(*pid);
        assert!(
            !environ.is_empty(),
            "cannot read worker {pid}'s environment"
        );
        assert!(
            environ
                .iter()
                .all(|var| !var.starts_with("WIX_CLUSTER_ADMIN_TOKEN=")
                    && !var.starts_with("NOTIFY_SOCKET=")),
            "worker {pid} sees {environ:?}"
        );
    }
    // The master kept what it needs: the token still guards the admin actions.
    let management = program.management_addr();
    let scale = wix_cluster_suite::http_request(
        management,
        "POST",
        "/workers/scale?count=4",
        &[("Authorization", "Bearer s3cret-token")],
    )
    .expect("management app");
    assert_eq!(scale.status, 202, "{scale:?}");
}

/// What the `starts_programs` workers logged they started: `(worker pid, program pid)`,
/// waiting until there are `n`.
fn started_programs(program: &Program, n: usize) -> Vec<(u32, u32)> {
    let parse = |log: String| -> Vec<(u32, u32)> {
        log.lines()
            .filter_map(|line| {
                let (_, rest) = line.split_once(" (pid ")?;
                let (worker, rest) = rest.split_once(") started pid ")?;
                Some((worker.parse().ok()?, rest.trim().parse().ok()?))
            })
            .collect()
    };
    let mut started = Vec::new();
    let all = wait_until(PATIENCE, || {
        started = parse(program.log());
        started.len() >= n
    });
    assert!(all, "expected {n} started programs, have {started:?}");
    started
}

/// Kills, when dropped, the `sleep` processes a test expects to be gone or left.
struct Sleeps(Vec<u32>);

impl Drop for Sleeps {
    fn drop(&mut self) {
        for pid in &self.0 {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if comm.trim() == "sleep" {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(*pid as i32),
                    Signal::SIGKILL,
                );
            }
        }
    }
}

const STARTS_PROGRAMS: [(&str, &str); 2] = [("PORT", "0"), ("WIX_CLUSTER_WORKERS", "2")];

#[test]
fn what_the_app_starts_ends_when_the_cluster_stops() {
    let mut program = Program::start_fixture("starts_programs", &STARTS_PROGRAMS);
    let started = started_programs(&program, 2);
    let sleeps = Sleeps(started.iter().map(|(_, sleep)| *sleep).collect());
    assert!(sleeps.0.iter().all(|pid| is_alive(*pid)), "{started:?}");
    program.wait_for_200(program.listening_addr(), "/");

    program.signal(Signal::SIGTERM);
    program.assert_exits_with(0);
    let gone = wait_until(PATIENCE, || !sleeps.0.iter().any(|pid| is_alive(*pid)));
    assert!(
        gone,
        "what the app started outlived the cluster: {started:?}"
    );
}

#[test]
fn what_a_killed_worker_started_ends_with_it_and_only_that() {
    let program = Program::start_fixture("starts_programs", &STARTS_PROGRAMS);
    let started = started_programs(&program, 2);
    let mut sleeps = Sleeps(started.iter().map(|(_, sleep)| *sleep).collect());
    program.wait_for_200(program.listening_addr(), "/");
    let (killed, its_sleep) = started[0];
    let (_, other_sleep) = started[1];

    wix_cluster_suite::send_signal(killed, Signal::SIGKILL);
    let gone = wait_until(PATIENCE, || !is_alive(its_sleep));
    assert!(gone, "worker {killed}'s sleep {its_sleep} outlived it");
    // Its replacement started its own; the other worker's is left alone.
    let now = started_programs(&program, 3);
    sleeps.0.extend(now.iter().map(|(_, sleep)| *sleep));
    std::thread::sleep(Duration::from_millis(500));
    assert!(is_alive(other_sleep), "the other worker's sleep was killed");
    assert!(is_alive(now[2].1), "the replacement's sleep was killed");
}

#[test]
fn with_keep_worker_children_what_the_app_starts_outlives_the_cluster() {
    let mut env = STARTS_PROGRAMS.to_vec();
    env.push(("WIX_CLUSTER_KEEP_WORKER_CHILDREN", "1"));
    let mut program = Program::start_fixture("starts_programs", &env);
    let started = started_programs(&program, 2);
    let sleeps = Sleeps(started.iter().map(|(_, sleep)| *sleep).collect());
    program.wait_for_200(program.listening_addr(), "/");

    program.signal(Signal::SIGTERM);
    program.assert_exits_with(0);
    std::thread::sleep(Duration::from_millis(1000));
    assert!(
        sleeps.0.iter().all(|pid| is_alive(*pid)),
        "the opt-out did not keep what the app started: {started:?}"
    );
}

#[test]
fn a_worker_retired_before_its_hello_drains_without_being_dropped() {
    let program = hello(&[
        ("WIX_CLUSTER_WORKERS", "1"),
        ("RUST_LOG", "info,wix_cluster::master=debug"),
    ]);
    program.wait_for_200(program.listening_addr(), "/");
    // One worker more, and at once one fewer: the new worker is retired while it is
    // still starting (exec takes longer than the master's next loop turn). The two
    // signals may be handled in either order when sent together: SIGTTOU goes once the
    // master has forked for SIGTTIN (its child appears, polled without a pause).
    let before = program.children().len();
    program.signal(Signal::SIGTTIN);
    let deadline = std::time::Instant::now() + PATIENCE;
    while program.children().len() <= before && std::time::Instant::now() < deadline {
        std::hint::spin_loop();
    }
    program.signal(Signal::SIGTTOU);
    let ended = wait_until(PATIENCE, || {
        let log = program.log();
        log.lines().any(|line| {
            line.contains("worker 2 (pid ")
                && (line.contains(" stopped (") || line.contains("dropping it"))
        })
    });
    assert!(ended, "worker 2 never ended");
    let log = program.log();
    assert!(
        !log.contains("said hello twice"),
        "a retired worker's hello was refused"
    );
    assert!(
        log.lines()
            .any(|line| line.contains("worker 2 (pid ") && line.contains("stopped (exit code 0)")),
        "worker 2 did not drain and exit 0"
    );
}

#[test]
fn the_shared_listener_queues_1024_connections() {
    let program = hello(&[("WIX_CLUSTER_WORKERS", "1")]);
    let addr = program.listening_addr();
    // `ss` shows a listening socket's backlog in its Send-Q column.
    let out = std::process::Command::new("ss")
        .args(["-ltnH", &format!("sport = :{}", addr.port())])
        .output()
        .expect("ss (iproute2) runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let backlogs: Vec<&str> = text
        .lines()
        .filter_map(|line| line.split_whitespace().nth(2))
        .collect();
    assert_eq!(backlogs, ["1024"], "ss says: {text}");
}
