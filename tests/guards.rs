//! The `Stall` plugin against real misbehaving workers (the `runaway` fixture program).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use wix_cluster_suite::{Load, PATIENCE, Program, http_get, is_alive, wait_until};

fn runaway(extra: &[(&str, &str)]) -> Program {
    let mut env = vec![("PORT", "0")];
    env.extend_from_slice(extra);
    Program::start_fixture("runaway", &env)
}

fn pid_of(addr: std::net::SocketAddr, path: &str) -> u32 {
    let response = http_get(addr, path).expect("served");
    assert_eq!(response.status, 200, "{response:?}");
    response.body.parse().expect("a pid")
}

#[test]
fn a_blocked_worker_is_detected_and_replaced_while_the_others_keep_serving() {
    let program = runaway(&[("STALL_TIMEOUT_MS", "2000")]);
    let addr = program.listening_addr();
    let before: HashSet<u32> = program.wait_for_workers(2).into_iter().collect();
    let blocked_at = Instant::now();
    // This request never completes: its worker is killed.
    std::thread::spawn(move || http_get(addr, "/block?ms=600000"));

    // Who answered `GET /` meanwhile. A request may have gone to the worker that is
    // about to block (accepted before its `/block` ran): that one fails when the worker
    // is killed, so keep asking until the other worker has answered too.
    let mut served_by = HashSet::new();
    let mut replaced_after = None;
    let done = wait_until(PATIENCE, || {
        if let Ok(response) = http_get(addr, "/") {
            if let Ok(pid) = response.body.parse::<u32>() {
                served_by.insert(pid);
            }
        }
        let now: HashSet<u32> = program.workers().into_iter().collect();
        if replaced_after.is_none() && now.len() == 2 && now.intersection(&before).count() == 1 {
            replaced_after = Some(blocked_at.elapsed());
        }
        replaced_after.is_some() && served_by.intersection(&now).any(|pid| before.contains(pid))
    });
    let took = replaced_after.unwrap_or_else(|| panic!("the blocked worker was not replaced"));
    let line = program.wait_for_log("stalled: no heartbeat from pid");
    let blocked: u32 = line
        .split("no heartbeat from pid ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|pid| pid.parse().ok())
        .expect("the pid in the log line");
    assert!(before.contains(&blocked) && !is_alive(blocked));
    assert!(
        done,
        "the other worker must keep serving: answers came from {served_by:?} (workers \
         before {before:?}, blocked {blocked})"
    );
    // Timeout 2 s, then SIGABRT; generous margin for a loaded 2-core machine.
    assert!(took < Duration::from_secs(15), "took {took:?}");
}

/// Starts `runaway` with `env`, makes a worker misbehave with `GET path`, and checks that
/// a guard recycles it: the worker dies, the master logs `reason`, and the cluster is
/// back to 2 workers.
fn assert_recycled(env: &[(&str, &str)], path: &str, reason: &str) {
    let program = runaway(env);
    let addr = program.listening_addr();
    program.wait_for_workers(2);
    let misbehaving = pid_of(addr, path);
    program.wait_until_gone(misbehaving);
    program.wait_for_log(reason);
    program.wait_for_workers(2);
}

#[test]
fn a_cpu_hog_is_recycled_with_the_cpu_guard_on() {
    // 20%: a spinning worker takes more than that of one core even on a machine whose
    // two cores other tests keep busy (it got about 25% under a load average of 9),
    // and an idle worker nowhere near it.
    assert_recycled(
        &[("CPU_PERCENT", "20"), ("CPU_FOR_MS", "2000")],
        "/hog",
        "CPU above 20% for",
    );
}

#[test]
fn a_cpu_hog_is_left_alone_with_the_cpu_guard_off() {
    let program = runaway(&[]);
    let addr = program.listening_addr();
    program.wait_for_workers(2);
    let hog = pid_of(addr, "/hog");
    // Longer than the guard's window in the test above, with a margin.
    std::thread::sleep(Duration::from_secs(5));
    assert!(is_alive(hog));
    assert!(!program.log().contains("recycling"));
}

#[test]
fn a_worker_past_max_rss_is_recycled() {
    assert_recycled(
        &[("MAX_RSS_MB", "100")],
        "/alloc?mb=150",
        "is above max_rss 104857600 bytes",
    );
}

#[test]
fn max_requests_recycles_workers_without_failing_a_request() {
    let program = runaway(&[("MAX_REQUESTS", "50"), ("MAX_REQUESTS_JITTER", "0")]);
    let addr = program.listening_addr();
    let first = program.wait_for_workers(2);
    let load = Load::start(addr, 4, "/");
    let recycled_all = wait_until(PATIENCE, || {
        program
            .log()
            .matches("served 50 requests (max_requests)")
            .count()
            >= 4
    });
    std::thread::sleep(Duration::from_millis(500));
    let report = load.stop();
    eprintln!("max_requests under load: {report}");
    assert!(recycled_all);
    assert!(report.failed.is_empty(), "failed: {:?}", report.failed);
    assert!(
        report.served_by.len() > 2,
        "served by {:?}",
        report.served_by
    );
    for pid in first {
        assert!(
            !is_alive(pid),
            "first-generation worker {pid} was never recycled"
        );
    }
}
