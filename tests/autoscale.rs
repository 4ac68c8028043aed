//! `Autoscale` under real load (examples/autoscale.rs, the `Load` clients of the kit,
//! one connection per request): a CPU step load scales up to the CPUs and back to
//! `min`; a steady load that needed a second worker does not flap; slow (sleeping)
//! requests scale up and none is cut by the scale-down; idle WebSockets scale nothing;
//! a crash-looping build freezes the autoscaler; a memory floor stops scaling up, said
//! once. Every decision is read from the event log (`kind` `autoscale`), with its time.
//! Each cluster logs the autoscaler's reading of every second (at debug), which a
//! failing test prints with the rest of the cluster's log.

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use wix_cluster_suite::{
    Load, LoadReport, PATIENCE, Program, Scratch, http_get, raw_websocket, wait_until,
};

/// How long the cluster must stay idle before a step down, in these tests.
const IDLE_FOR: Duration = Duration::from_secs(10);

/// The CPUs this machine gives a process: what `max = "auto"` means (at least 2 here,
/// so that there is something to scale to).
fn cpus() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().max(2))
}

/// The autoscale example with `min = 1`, `max` the CPUs, `IDLE_FOR` and `env`.
fn start(env: &[(&str, &str)]) -> Program {
    let bounds = format!("1..{}", cpus());
    let idle = format!("{}s", IDLE_FOR.as_secs());
    let mut all = vec![
        ("PORT", "0"),
        ("RUST_LOG", "info,wix_cluster::plugins::autoscale=debug"),
        ("IDLE_FOR", idle.as_str()),
        ("WIX_CLUSTER_AUTOSCALE", bounds.as_str()),
    ];
    all.extend_from_slice(env);
    let program = Program::start("autoscale", &all);
    program.wait_for_workers(1);
    let addr = program.listening_addr();
    program.wait_for_200(addr, "/");
    program
}

/// `GET /workers`' `desired`.
fn desired(management: SocketAddr) -> usize {
    let response = http_get(management, "/workers").expect("GET /workers");
    let workers: Value = serde_json::from_str(&response.body).expect("JSON");
    workers["desired"].as_u64().expect("desired") as usize
}

/// The ready workers in `GET /workers`.
fn ready(management: SocketAddr) -> usize {
    let response = http_get(management, "/workers").expect("GET /workers");
    let workers: Value = serde_json::from_str(&response.body).expect("JSON");
    workers["workers"].as_array().map_or(0, |all| {
        all.iter().filter(|w| w["state"] == "ready").count()
    })
}

/// The `autoscale` entries of the event log, oldest first: (time, cause).
fn decisions(management: SocketAddr) -> Vec<(SystemTime, String)> {
    let response = http_get(management, "/events").expect("GET /events");
    let page: Value = serde_json::from_str(&response.body).expect("JSON");
    let mut found: Vec<(SystemTime, String)> = page["events"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter(|event| event["kind"] == "autoscale")
        .map(|event| {
            let time = event["time"].as_f64().expect("time");
            let cause = event["cause"].as_str().expect("cause").to_owned();
            (UNIX_EPOCH + Duration::from_secs_f64(time), cause)
        })
        .collect();
    found.sort_by_key(|(time, _)| *time);
    found
}

/// The autoscaler's own scaling decisions (`... -> N`) among `decisions` (not an
/// operator's scale it reports).
fn scalings(management: SocketAddr) -> Vec<(SystemTime, String)> {
    decisions(management)
        .into_iter()
        .filter(|(_, cause)| cause.contains(" -> ") && !cause.starts_with("scaled by an operator"))
        .collect()
}

/// Waits until `desired` is `count`; returns the decision that made it so.
fn wait_for_desired(
    management: SocketAddr,
    count: usize,
    patience: Duration,
) -> (SystemTime, String) {
    let reached = wait_until(patience, || desired(management) == count);
    let all = decisions(management);
    assert!(reached, "desired never reached {count}: {all:?}");
    let suffix = format!("-> {count}");
    scalings(management)
        .into_iter()
        .rev()
        .find(|(_, cause)| cause.ends_with(&suffix))
        .unwrap_or_else(|| panic!("no decision to {count}: {all:?}"))
}

fn assert_none_failed(report: &LoadReport, what: &str) {
    assert!(report.ok > 0, "{what}: no request answered");
    assert!(report.failed.is_empty(), "{what}: {report}");
}

/// How long after `start` the decision `at` was made.
fn after(at: SystemTime, start: SystemTime) -> Duration {
    at.duration_since(start).unwrap_or_default()
}

#[test]
fn a_cpu_step_load_scales_up_to_the_cpus_within_5s_and_back_to_min_after_idle_for() {
    let program = start(&[]);
    let (app, management) = (program.listening_addr(), program.management_addr());
    let max = cpus();

    // One client, one request at a time: one worker is enough, however busy.
    let one = Load::start(app, 1, "/burn?ms=5");
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(desired(management), 1, "{:?}", decisions(management));

    // The step: 16 clients.
    let step = SystemTime::now();
    let many = Load::start(app, 16, "/burn?ms=5");
    let (at, cause) = wait_for_desired(management, max, PATIENCE);
    assert!(
        after(at, step) <= Duration::from_secs(5),
        "{max} workers decided {:?} after the step: {cause}",
        after(at, step)
    );
    assert!(cause.starts_with("busy "), "{cause}");
    assert!(
        wait_until(PATIENCE, || ready(management) == max),
        "never {max} ready workers"
    );
    // Every worker is busy, as /workers says.
    let busy = wait_until(PATIENCE, || {
        let response = http_get(management, "/workers").expect("GET /workers");
        let page: Value = serde_json::from_str(&response.body).expect("JSON");
        let shares: Vec<f64> = page["workers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|w| w["state"] == "ready")
            .filter_map(|w| w["busy"].as_f64())
            .collect();
        shares.len() == max && shares.iter().all(|share| *share > 0.5)
    });
    assert!(busy, "the workers do not read busy under 16 clients");
    let crowd = many.stop();
    assert_none_failed(&crowd, "16 clients");

    // Back to one client: back to min once idle for IDLE_FOR.
    let back = SystemTime::now();
    let (at, cause) = wait_for_desired(management, 1, IDLE_FOR + PATIENCE);
    assert!(
        after(at, back) <= IDLE_FOR + Duration::from_secs(5),
        "back to 1 worker {:?} after the load fell: {cause}",
        after(at, back)
    );
    let single = one.stop();
    assert_none_failed(&single, "1 client");
    assert!(
        wait_until(PATIENCE, || program.workers().len() == 1),
        "the retired workers did not exit: {:?}",
        program.workers()
    );
}

#[test]
fn a_steady_load_at_half_capacity_for_2_minutes_changes_the_count_at_most_once_after_10s() {
    let program = start(&[]);
    let (app, management) = (program.listening_addr(), program.management_addr());
    // Two clients, each busy half the time: one CPU's worth of work out of two. On one
    // worker they wait for each other; on two each has its own.
    let began = SystemTime::now();
    let load = Load::paced(app, 2, "/burn?ms=10", Duration::from_millis(10));
    std::thread::sleep(Duration::from_secs(120));
    let report = load.stop();
    assert_none_failed(&report, "the steady load");
    let settled = began + Duration::from_secs(10);
    let late: Vec<_> = scalings(management)
        .into_iter()
        .filter(|(at, _)| *at > settled)
        .collect();
    assert!(
        late.len() <= 1,
        "the count changed {} times after the first 10 s: {late:?} (all: {:?})",
        late.len(),
        decisions(management)
    );
}

#[test]
fn slow_requests_scale_up_and_the_scale_down_cuts_none_in_flight() {
    // Sleeping requests do not use the CPU: more workers than CPUs is fine here.
    let program = start(&[("WIX_CLUSTER_AUTOSCALE", "1..4")]);
    let (app, management) = (program.listening_addr(), program.management_addr());
    // A burst of 100 concurrent requests of 2 s each, renewed for 8 s.
    let burst = Load::start(app, 100, "/sleep?ms=2000");
    let (_, cause) = wait_for_desired(management, 4, PATIENCE);
    assert!(cause.starts_with("busy "), "{cause}");
    std::thread::sleep(Duration::from_secs(4));
    assert_none_failed(&burst.stop(), "the burst");
    // Then a trickle: one slow request at a time, landing on any worker, while the
    // count falls one worker at a time (each retired worker drains what it holds).
    let trickle = Load::start(app, 1, "/sleep?ms=700");
    let (_, cause) = wait_for_desired(management, 1, IDLE_FOR + PATIENCE);
    assert!(cause.contains("-> 1"), "{cause}");
    assert!(
        wait_until(PATIENCE, || program.workers().len() == 1),
        "the retired workers did not exit: {:?}",
        program.workers()
    );
    let trickled = trickle.stop();
    assert_none_failed(&trickled, "the requests in flight through the scale-down");
    let downs = scalings(management)
        .iter()
        .filter(|(_, cause)| cause.contains("4 -> 3") || cause.contains("2 -> 1"))
        .count();
    assert_eq!(
        downs,
        2,
        "one worker at a time: {:?}",
        decisions(management)
    );
}

#[test]
fn a_hundred_open_websockets_and_no_requests_scale_nothing() {
    let program = start(&[]);
    let (app, management) = (program.listening_addr(), program.management_addr());
    let sockets: Vec<_> = (0..100).map(|_| raw_websocket(app, "/ws")).collect();
    let upgraded = wait_until(PATIENCE, || {
        let metrics = http_get(management, "/metrics").expect("GET /metrics");
        metrics.body.lines().any(|line| {
            line.starts_with("wix_cluster_worker_open_connections{")
                && line.contains("kind=\"upgraded\"")
                && line.ends_with(" 100")
        })
    });
    assert!(upgraded, "the 100 WebSockets never showed as upgraded");
    std::thread::sleep(Duration::from_secs(8));
    assert_eq!(desired(management), 1, "{:?}", decisions(management));
    assert!(
        scalings(management).is_empty(),
        "{:?}",
        decisions(management)
    );
    drop(sockets);
}

#[test]
fn a_crash_looping_build_during_a_scale_up_freezes_the_autoscaler_and_the_survivor_serves() {
    let scratch = Scratch::new("autoscale", "crash");
    let crash = scratch.path("crash");
    let crash_file = crash.to_string_lossy().into_owned();
    let program = start(&[
        ("CRASH_FILE", crash_file.as_str()),
        ("MAX_DEATHS", "3"),
        ("WIX_CLUSTER_AUTOSCALE", "1..4"),
    ]);
    let (app, management) = (program.listening_addr(), program.management_addr());
    let survivor = program.workers();
    // From now on a new worker refuses to start: a bad build.
    std::fs::write(&crash, "").expect("write the crash file");
    let load = Load::start(app, 16, "/burn?ms=5");
    let frozen = wait_until(PATIENCE, || {
        decisions(management)
            .iter()
            .any(|(_, cause)| cause.starts_with("frozen: the cluster is failing"))
    });
    assert!(frozen, "never frozen: {:?}", decisions(management));
    // Frozen: no decision after it, and the first worker still serves everything.
    let count = scalings(management).len();
    std::thread::sleep(Duration::from_secs(5));
    let report = load.stop();
    assert_none_failed(&report, "the load through the crash loop");
    assert_eq!(
        report.served_by.iter().copied().collect::<Vec<_>>(),
        survivor,
        "only the survivor served"
    );
    assert_eq!(
        scalings(management).len(),
        count,
        "a decision while frozen: {:?}",
        decisions(management)
    );
    assert!(
        program
            .log()
            .contains("autoscale: frozen: the cluster is failing"),
        "the log says why"
    );
}

#[test]
fn below_the_memory_floor_nothing_scales_up_and_it_is_said_once() {
    let program = start(&[("WIX_CLUSTER_AUTOSCALE_MEMORY_FLOOR", "1TiB")]);
    let (app, management) = (program.listening_addr(), program.management_addr());
    let load = Load::start(app, 16, "/burn?ms=5");
    let said = wait_until(PATIENCE, || {
        decisions(management)
            .iter()
            .any(|(_, cause)| cause.starts_with("no scaling up:"))
    });
    assert!(said, "never said: {:?}", decisions(management));
    let began = Instant::now();
    while began.elapsed() < Duration::from_secs(6) {
        assert_eq!(desired(management), 1, "{:?}", decisions(management));
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_none_failed(&load.stop(), "the load");
    let said = decisions(management)
        .iter()
        .filter(|(_, cause)| cause.starts_with("no scaling up:"))
        .count();
    assert_eq!(said, 1, "{:?}", decisions(management));
    assert_eq!(
        program.log().matches("autoscale: no scaling up").count(),
        1,
        "logged once"
    );
}

#[test]
fn an_operators_scale_up_is_a_floor_the_idle_cluster_keeps() {
    let program = start(&[]);
    let management = program.management_addr();
    wix_cluster_suite::send_signal(program.pid(), nix::sys::signal::Signal::SIGTTIN);
    program.wait_for_workers(2);
    let held = wait_until(PATIENCE, || {
        decisions(management)
            .iter()
            .any(|(_, cause)| cause == "scaled by an operator: 1 -> 2; at least 2 workers for 10m")
    });
    assert!(held, "no hold said: {:?}", decisions(management));
    // Idle for longer than idle_for: without the hold it would go back to 1.
    std::thread::sleep(IDLE_FOR + Duration::from_secs(5));
    assert_eq!(desired(management), 2, "{:?}", decisions(management));
    assert!(
        scalings(management).is_empty(),
        "{:?}",
        decisions(management)
    );
}

#[test]
fn an_app_without_http_scales_on_the_jobs_it_counts_in_the_app_busy_gauge() {
    let program = Program::start_fixture("queue_worker", &[("WIX_CLUSTER_AUTOSCALE", "1..2")]);
    let management = program.management_addr();
    let (_, cause) = wait_for_desired(management, 2, PATIENCE);
    assert!(
        cause.starts_with("busy 100% for ")
            && cause.ends_with("with 4 clients on 1 worker: 1 -> 2"),
        "{cause}"
    );
    // Two workers that never listen (online, not ready), each busy with its jobs.
    let busy = wait_until(PATIENCE, || {
        let response = http_get(management, "/workers").expect("GET /workers");
        let page: Value = serde_json::from_str(&response.body).expect("JSON");
        let online: Vec<&Value> = page["workers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|w| w["state"] == "online")
            .collect();
        online.len() == 2
            && online
                .iter()
                .all(|w| w["busy"].as_f64() == Some(1.0) && w["clients"].as_u64() == Some(4))
    });
    assert!(
        busy,
        "{:?}",
        http_get(management, "/workers").map(|r| r.body)
    );
}
