//! The management app against running examples, over real HTTP: every page and its
//! JSON fields, health under cyclic death and rolling restart, Prometheus metrics
//! through a parser, the admin token rules, the mount point, single-process mode, and a
//! management port that is taken.

use std::collections::{BTreeSet, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use wix_cluster_suite::{
    PATIENCE, Program, Response, http_get, http_request, send_signal, wait_until,
};

const TOKEN: &str = "s3cret-t0ken";

fn start(example: &str, extra: &[(&str, &str)]) -> Program {
    let mut env = vec![("PORT", "0")];
    env.extend_from_slice(extra);
    Program::start(example, &env)
}

fn get(addr: SocketAddr, path: &str) -> Response {
    http_get(addr, path).unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

/// `GET path`: the status and the body as JSON.
fn get_json(addr: SocketAddr, path: &str) -> (u16, Value) {
    let response = get(addr, path);
    let json = serde_json::from_str(&response.body)
        .unwrap_or_else(|e| panic!("GET {path} is not JSON ({e}): {response:?}"));
    (response.status, json)
}

fn post(addr: SocketAddr, path: &str, token: Option<&str>) -> (u16, Value) {
    let bearer = token.map(|token| format!("Bearer {token}"));
    let headers: Vec<(&str, &str)> = bearer
        .iter()
        .map(|value| ("Authorization", value.as_str()))
        .collect();
    let response =
        http_request(addr, "POST", path, &headers).unwrap_or_else(|e| panic!("POST {path}: {e}"));
    let json = serde_json::from_str(&response.body)
        .unwrap_or_else(|e| panic!("POST {path} is not JSON ({e}): {response:?}"));
    (response.status, json)
}

/// The live (not exited) rows of `/workers`.
fn live_rows(management: SocketAddr) -> Vec<Value> {
    let (status, workers) = get_json(management, "/workers");
    assert_eq!(status, 200);
    workers["workers"]
        .as_array()
        .expect("a workers array")
        .iter()
        .filter(|row| row["state"] != "exited")
        .cloned()
        .collect()
}

fn now_seconds() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn pids(rows: &[Value]) -> BTreeSet<u32> {
    rows.iter()
        .filter_map(|row| row["pid"].as_u64())
        .map(|pid| pid as u32)
        .collect()
}

/// The `management_page` example with two workers, once both are ready: the program,
/// its management address and its app's address.
fn two_ready_workers() -> (Program, SocketAddr, SocketAddr) {
    let program = start("management_page", &[("WIX_CLUSTER_WORKERS", "2")]);
    let management = program.management_addr();
    let app = program.listening_addr();
    program.wait_for_200(management, "/health/ready");
    (program, management, app)
}

#[test]
fn the_info_page_describes_the_app_the_master_and_the_workers() {
    let (program, management, app) = two_ready_workers();
    let (status, info) = get_json(management, "/");
    assert_eq!(status, 200, "{info}");
    assert_eq!(info["app"]["name"], "management_page");
    assert_eq!(
        info["app"]["version"], "0.0.0",
        "the suite package's version"
    );
    assert_eq!(info["pid"], program.pid());
    assert_eq!(info["mode"], "cluster");
    let uptime = info["uptime_seconds"].as_f64().expect("uptime_seconds");
    let started = info["started_at"].as_f64().expect("started_at");
    assert!(uptime > 0.0 && uptime < 120.0, "{info}");
    assert!((now_seconds() - uptime - started).abs() < 2.0, "{info}");
    assert_eq!(info["workers"]["desired"], 2);
    assert_eq!(info["workers"]["running"], 2);
    assert_eq!(info["workers"]["ready"], 2);
    assert_eq!(info["deaths"], 0);
    assert_eq!(info["failing"], false);
    assert_eq!(info["management_addr"], management.to_string());
    assert_eq!(info["mount_point"], "");
    assert_eq!(info["app_addrs"][0], app.to_string());
    assert_eq!(info["admin_actions"], false);
}

#[test]
fn the_workers_page_has_a_row_per_worker_with_every_field_sampled_and_counted() {
    let (program, management, app) = two_ready_workers();
    let (_, info) = get_json(management, "/");
    let started = info["started_at"].as_f64().expect("started_at");

    let (status, workers) = get_json(management, "/workers");
    assert_eq!(status, 200);
    assert_eq!(workers["desired"], 2);
    let rows = workers["workers"].as_array().expect("workers").clone();
    assert_eq!(rows.len(), 2, "{workers}");
    let children: BTreeSet<u32> = program.workers().into_iter().collect();
    assert_eq!(pids(&rows), children);
    for (row, id) in rows.iter().zip([1, 2]) {
        assert_eq!(row["id"], id, "{row}");
        assert_eq!(row["generation"], 0);
        assert_eq!(row["restarts"], 0);
        assert_eq!(row["state"], "ready");
        assert!(row["started_at"].as_f64().is_some_and(|t| t >= started));
        assert!(row["uptime_seconds"].as_f64().is_some_and(|t| t > 0.0));
        assert!(row.get("rss_bytes").is_some() && row.get("cpu_seconds").is_some());
        assert!(
            row["heartbeat_age_ms"].as_u64().is_some_and(|ms| ms < 5000),
            "{row}"
        );
        assert!(row["requests"].as_u64().is_some(), "{row}");
        assert!(row["exited_at"].is_null());
        assert!(row.get("cpu_percent").is_some(), "{row}");
    }
    // CPU % needs two samples (2 s apart); memory and CPU time one.
    let mut last = Vec::new();
    let sampled = wait_until(PATIENCE, || {
        last = live_rows(management);
        last.iter().all(|row| {
            row["cpu_percent"].as_f64().is_some_and(|cpu| cpu >= 0.0)
                && row["cpu_seconds"].as_f64().is_some_and(|cpu| cpu >= 0.0)
                && row["rss_bytes"].as_u64().is_some_and(|rss| rss > 1_000_000)
        })
    });
    assert!(sampled, "not sampled: {last:?}");

    // Requests served through http::serve show up with the next heartbeat.
    for _ in 0..5 {
        assert_eq!(get(app, "/").status, 200);
    }
    let counted = wait_until(PATIENCE, || {
        let served: u64 = live_rows(management)
            .iter()
            .filter_map(|row| row["requests"].as_u64())
            .sum();
        served >= 5
    });
    assert!(counted, "requests never counted");
}

#[test]
fn the_health_pages_say_alive_ready_and_that_the_app_answers() {
    let (_program, management, app) = two_ready_workers();
    let (status, alive) = get_json(management, "/health/is_alive");
    assert_eq!((status, &alive["status"]), (200, &Value::from("alive")));
    assert_eq!(alive["failing"], false);
    assert_eq!(alive["ready_workers"], 2);
    let (status, ready) = get_json(management, "/health/ready");
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["ready"], 2);
    assert_eq!(ready["desired"], 2);
    let (status, deployment) = get_json(management, "/health/deployment/test");
    assert_eq!(status, 200, "{deployment}");
    assert_eq!(deployment["status"], "ok");
    assert_eq!(deployment["app_status"], 200);
    assert_eq!(
        deployment["url"],
        format!("http://{app}/health/is_alive"),
        "{deployment}"
    );
}

#[test]
fn the_stats_pages_have_the_counters_and_each_workers_samples() {
    let (_program, management, _) = two_ready_workers();
    // A worker's row and history appear with its samples (taken every 2 s).
    let (mut stats, mut history) = (Value::Null, Value::Null);
    let sampled = wait_until(PATIENCE, || {
        stats = get_json(management, "/stats").1;
        history = get_json(management, "/stats/history").1;
        let each_sampled = |page: &Value, sampled: fn(&Value) -> bool| {
            page["workers"]
                .as_array()
                .is_some_and(|rows| rows.len() == 2 && rows.iter().all(sampled))
        };
        each_sampled(&stats, |row| row["sampled_at"].is_f64())
            && each_sampled(&history, |worker| {
                worker["samples"].as_array().is_some_and(|s| !s.is_empty())
            })
    });
    assert!(sampled, "not sampled: {stats} {history}");
    let (status, stats) = get_json(management, "/stats");
    assert_eq!(status, 200);
    assert_eq!(stats["sampled_every_ms"], 2000);
    let counters = &stats["counters"];
    for name in [
        "forked",
        "respawned",
        "restarts",
        "exited",
        "died",
        "failing",
        "recycled",
        "stalled",
    ] {
        assert!(counters[name].is_u64(), "counter {name}: {stats}");
    }
    assert_eq!(counters["forked"], 2);
    assert_eq!(counters["died"], 0);
    let stat_rows = stats["workers"].as_array().expect("workers");
    assert_eq!(stat_rows.len(), 2);
    for row in stat_rows {
        assert!(row["custom"].is_object(), "{row}");
        assert!(row["sampled_at"].as_f64().is_some(), "{row}");
        assert!(row["rss_bytes"].as_u64().is_some_and(|rss| rss > 0));
    }
    let (status, history) = get_json(management, "/stats/history");
    assert_eq!(status, 200);
    assert_eq!(history["kept_seconds"], 300);
    for worker in history["workers"].as_array().expect("workers") {
        let samples = worker["samples"].as_array().expect("samples");
        assert!(!samples.is_empty(), "{worker}");
        let sample = &samples[0];
        assert!(sample["t"].as_u64().is_some() && sample["rss_bytes"].as_u64().is_some());
        assert!(sample["cpu_percent"].as_f64().is_some(), "{sample}");
    }
}

#[test]
fn the_programs_own_page_is_served_by_the_master_beside_the_built_in_ones() {
    let (program, management, _) = two_ready_workers();
    let (status, custom) = get_json(management, "/custom");
    assert_eq!(status, 200);
    assert_eq!(custom["message"], "Hi from a custom management page");
    assert_eq!(custom["served_by_pid"], program.pid());
    assert_eq!(get(management, "/no/such/page").status, 404);
}

#[test]
fn the_dashboard_is_html_with_the_worker_table() {
    let (_program, management, _) = two_ready_workers();
    let dashboard = get(management, "/dashboard");
    assert_eq!(dashboard.status, 200);
    assert!(
        dashboard
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/html"))
    );
    assert!(dashboard.body.contains("<table id=\"workers\">"));
    assert!(dashboard.body.contains("const BASE = \"\";"));
}

#[test]
fn a_killed_worker_shows_as_exited_beside_its_replacement() {
    let program = start("flaky", &[("WIX_CLUSTER_WORKERS", "2")]);
    let management = program.management_addr();
    program.wait_for_200(management, "/health/ready");
    let victim = live_rows(management)[0]["pid"].as_u64().expect("a pid") as u32;
    send_signal(victim, nix::sys::signal::Signal::SIGKILL);
    let mut last = Value::Null;
    let seen = wait_until(PATIENCE, || {
        let (_, workers) = get_json(management, "/workers");
        last = workers.clone();
        let rows = workers["workers"].as_array().cloned().unwrap_or_default();
        let exited = rows.iter().any(|row| {
            row["pid"] == victim && row["state"] == "exited" && row["exited_at"].is_f64()
        });
        let replacement = rows
            .iter()
            .any(|row| row["id"] == 1 && row["generation"] == 1 && row["restarts"] == 1);
        exited && replacement
    });
    assert!(seen, "{last}");
    let (_, info) = get_json(management, "/");
    assert_eq!(info["deaths"], 1, "{info}");
}

#[test]
fn deployment_test_reports_why_the_app_is_not_alive() {
    // flaky has no /health/is_alive: the app answers 404.
    let program = start("flaky", &[]);
    let management = program.management_addr();
    program.wait_for_200(management, "/health/ready");
    let app = program.listening_addr();
    let (status, body) = get_json(management, "/health/deployment/test");
    assert_eq!(status, 500, "{body}");
    assert_eq!(body["status"], "failed");
    assert_eq!(body["app_status"], 404);
    assert_eq!(body["url"], format!("http://{app}/health/is_alive"));
    assert!(
        body["reason"].as_str().is_some_and(|r| r.contains("404")),
        "{body}"
    );
}

#[test]
fn is_alive_turns_503_on_cyclic_death_and_200_after_recovery() {
    let program = start(
        "flaky",
        &[
            ("MAX_DEATHS", "2"),
            ("WITHIN_MS", "4000"),
            ("WIX_CLUSTER_WORKERS", "2"),
        ],
    );
    let management = program.management_addr();
    let app = program.listening_addr();
    program.wait_for_200(management, "/health/ready");
    assert_eq!(get(management, "/health/is_alive").status, 200);

    // Three deaths within the window: one more than MAX_DEATHS.
    let cyclic = wait_until(PATIENCE, || {
        let _ = http_get(app, "/exit"); // the worker dies answering
        program.log().contains("cyclic death")
    });
    assert!(cyclic, "no cyclic death");

    let mut last = Value::Null;
    let dead = wait_until(Duration::from_secs(10), || {
        let (status, body) = get_json(management, "/health/is_alive");
        last = body;
        status == 503
    });
    assert!(dead, "is_alive stayed up: {last}");
    assert_eq!(last["status"], "dead");
    assert_eq!(last["failing"], true, "{last}");
    assert!(
        last["reason"]
            .as_str()
            .is_some_and(|r| r.contains("cyclic"))
    );
    let (_, info) = get_json(management, "/");
    assert_eq!(info["failing"], true);
    assert!(info["deaths"].as_u64().is_some_and(|d| d >= 3), "{info}");

    // After the window a worker is retried; once it serves, the cluster is alive again.
    let recovered = wait_until(PATIENCE, || {
        let (status, body) = get_json(management, "/health/is_alive");
        last = body;
        status == 200
    });
    assert!(recovered, "never recovered: {last}");
    assert_eq!(last["failing"], false);
    program.wait_for_log("serves again after cyclic death");
}

#[test]
fn ready_is_503_while_a_rolling_restart_is_mid_way_and_200_after() {
    let program = start(
        "flaky",
        &[
            ("WIX_CLUSTER_WORKERS", "2"),
            ("START_DELAY_MS", "1500"),
            ("WIX_CLUSTER_ADMIN_TOKEN", TOKEN),
        ],
    );
    let management = program.management_addr();
    program.wait_for_200(management, "/health/ready");
    let before = pids(&live_rows(management));

    let (status, body) = post(management, "/workers/restart", Some(TOKEN));
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["status"], "rolling restart started");

    let mut saw_not_ready = None;
    let mut alive_statuses = HashSet::new();
    let done = wait_until(PATIENCE, || {
        let (status, ready) = get_json(management, "/health/ready");
        if status == 503 && saw_not_ready.is_none() {
            saw_not_ready = Some(ready);
        }
        // Old workers serve until their successors are ready: alive throughout.
        alive_statuses.insert(get(management, "/health/is_alive").status);
        let now = pids(&live_rows(management));
        status == 200 && now.len() == 2 && now.is_disjoint(&before)
    });
    assert!(done, "the roll did not finish");
    let not_ready = saw_not_ready.expect("ready never answered 503 mid-roll");
    assert_eq!(not_ready["status"], "not_ready");
    assert_eq!(not_ready["desired"], 2);
    assert!(
        not_ready["ready"].as_u64().is_some_and(|n| n < 2),
        "{not_ready}"
    );
    assert_eq!(alive_statuses, HashSet::from([200]));
}

/// SIGTERM, then waits for `/health/ready` to answer 503 `"stopping"`.
fn sigterm_then_see_ready_turn_stopping(program: &Program, management: SocketAddr) {
    program.signal(nix::sys::signal::Signal::SIGTERM);
    let mut stopping = Value::Null;
    let flipped = wait_until(PATIENCE, || {
        let (status, body) = get_json(management, "/health/ready");
        stopping = body;
        status == 503
    });
    assert!(flipped, "ready never turned 503");
    assert_eq!(stopping["status"], "stopping", "{stopping}");
}

/// Not ready, yet the app still accepts: the orchestrator stops sending traffic before
/// anything stops accepting.
fn assert_serves_through_the_drain_delay(app: SocketAddr) {
    for _ in 0..10 {
        assert_eq!(
            get(app, "/").status,
            200,
            "the app must serve during the drain delay"
        );
    }
}

#[test]
fn ready_turns_503_at_the_stop_signal_while_workers_still_serve_through_the_drain_delay() {
    let mut program = start(
        "hello",
        &[
            ("HOST", "127.0.0.1"),
            ("PORT", "0"),
            ("WIX_CLUSTER_WORKERS", "2"),
            ("WIX_CLUSTER_DRAIN_DELAY", "3s"),
        ],
    );
    let management = program.management_addr();
    let app = program.listening_addr();
    program.wait_for_200(management, "/health/ready");
    let workers = program.wait_for_workers(2);

    sigterm_then_see_ready_turn_stopping(&program, management);
    assert_serves_through_the_drain_delay(app);
    let still: BTreeSet<u32> = program.workers().into_iter().collect();
    let before: BTreeSet<u32> = workers.into_iter().collect();
    assert_eq!(still, before, "no worker may stop during the delay");
    assert_drain_waited_for_the_delay(
        &program,
        "not ready from now on; workers keep serving for 3s",
    );
    program.assert_exits_with(0);
}

/// By the processes' own log timestamps: the first worker stopped accepting no sooner
/// than the 3 s drain delay after readiness turned 503 (logged as `flipped`).
fn assert_drain_waited_for_the_delay(program: &Program, flipped: &str) {
    let flipped = wix_cluster_suite::logged_at(&program.wait_for_log(flipped));
    let drained =
        wix_cluster_suite::logged_at(&program.wait_for_log("draining: stopped accepting"));
    let waited = drained.duration_since(flipped).unwrap_or_default();
    assert!(
        waited >= std::time::Duration::from_millis(2990),
        "stopped accepting {waited:?} after readiness turned 503, before the 3 s delay"
    );
}

#[test]
fn single_process_mode_turns_ready_503_at_the_stop_signal_and_serves_through_the_drain_delay() {
    let mut program = start(
        "hello",
        &[
            ("HOST", "127.0.0.1"),
            ("WIX_CLUSTER_SINGLE", "1"),
            ("WIX_CLUSTER_DRAIN_DELAY", "3s"),
        ],
    );
    let management = program.management_addr();
    let app = program.listening_addr();
    program.wait_for_200(management, "/health/ready");

    sigterm_then_see_ready_turn_stopping(&program, management);
    assert_serves_through_the_drain_delay(app);
    assert_drain_waited_for_the_delay(&program, "not ready from now on; serving for 3s");
    program.assert_exits_with(0);
}

#[test]
fn metrics_parse_as_prometheus_text_with_one_series_per_worker() {
    let program = start("management_page", &[("WIX_CLUSTER_WORKERS", "3")]);
    let management = program.management_addr();
    let app = program.listening_addr();
    program.wait_for_200(management, "/health/ready");
    // Custom metrics: every worker sets `app_ready`, each `GET /` counts a `hits`.
    for _ in 0..6 {
        assert_eq!(get(app, "/").status, 200);
    }
    // Each worker's gauges in its /stats row, the cluster's counters in /traffic.
    let mut stats = Value::Null;
    let mut traffic = Value::Null;
    let collected = wait_until(PATIENCE, || {
        stats = get_json(management, "/stats").1;
        traffic = get_json(management, "/traffic").1;
        let rows = stats["workers"].as_array().cloned().unwrap_or_default();
        let ready = rows
            .iter()
            .filter(|row| row["custom"]["app_ready"] == 1.0)
            .count();
        let hits = traffic["metrics"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|row| row["name"] == "hits")
            .and_then(|row| row["value"].as_f64());
        hits == Some(6.0) && ready == 3
    });
    assert!(
        collected,
        "custom metrics not in /stats and /traffic: {stats}\n{traffic}"
    );
    let response = get(management, "/metrics");
    assert_eq!(response.status, 200);
    assert_eq!(
        response.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let scrape =
        prometheus_parse::Scrape::parse(response.body.lines().map(|line| Ok(line.to_owned())))
            .expect("Prometheus text format");

    let series = |name: &str| -> Vec<&prometheus_parse::Sample> {
        scrape.samples.iter().filter(|s| s.metric == name).collect()
    };
    let workers_of = |name: &str| -> BTreeSet<String> {
        series(name)
            .iter()
            .filter_map(|s| s.labels.get("worker").map(str::to_owned))
            .collect()
    };
    let all: BTreeSet<String> = ["1", "2", "3"].map(String::from).into();
    let and_master: BTreeSet<String> = ["1", "2", "3", "master"].map(String::from).into();
    for (name, processes) in [
        ("process_cpu_seconds_total", &and_master),
        ("process_resident_memory_bytes", &and_master),
        ("process_start_time_seconds", &and_master),
        ("process_open_fds", &and_master),
        ("process_max_fds", &and_master),
        ("wix_cluster_worker_requests_total", &all),
        ("wix_cluster_worker_heartbeat_age_seconds", &all),
    ] {
        assert_eq!(
            series(name).len(),
            processes.len(),
            "{name}:\n{}",
            response.body
        );
        assert_eq!(&workers_of(name), processes, "{name}");
        assert!(scrape.docs.contains_key(name), "no HELP for {name}");
    }
    for sample in series("process_cpu_seconds_total") {
        assert!(matches!(sample.value, prometheus_parse::Value::Counter(v) if v >= 0.0));
    }
    for sample in series("process_resident_memory_bytes") {
        assert!(
            matches!(sample.value, prometheus_parse::Value::Gauge(v) if v > 1_000_000.0),
            "{sample:?}"
        );
    }
    let now = now_seconds();
    for sample in series("process_start_time_seconds") {
        assert!(
            matches!(sample.value, prometheus_parse::Value::Gauge(t) if t <= now && now - t < 120.0),
            "{sample:?}"
        );
    }
    let value = |name: &str| series(name).first().map(|s| s.value.clone());
    for (name, expected) in [
        (
            "wix_cluster_workers_forked_total",
            prometheus_parse::Value::Counter(3.0),
        ),
        (
            "wix_cluster_workers_died_total",
            prometheus_parse::Value::Counter(0.0),
        ),
        (
            "wix_cluster_workers_desired",
            prometheus_parse::Value::Gauge(3.0),
        ),
        (
            "wix_cluster_workers_ready",
            prometheus_parse::Value::Gauge(3.0),
        ),
        ("wix_cluster_failing", prometheus_parse::Value::Gauge(0.0)),
    ] {
        assert_eq!(value(name), Some(expected), "{name}");
    }

    // Custom worker metrics: gauges as named, by worker; counters with `_total`,
    // summed over the cluster.
    assert_eq!(workers_of("app_ready"), all);
    for sample in series("app_ready") {
        assert_eq!(sample.value, prometheus_parse::Value::Gauge(1.0));
    }
    let hits: Vec<_> = series("hits_total")
        .iter()
        .map(|s| s.value.clone())
        .collect();
    assert_eq!(hits, [prometheus_parse::Value::Counter(6.0)]);
}

/// A refused action did nothing, also later: for [`wix_cluster_suite::STEADY`] the
/// workers stay the same two, and the event log has no fork and no roll step (what a
/// scale or a restart would have started).
fn assert_nothing_acted(program: &Program, management: SocketAddr) {
    let (_, events) = get_json(management, "/events");
    let since = events["latest"].as_u64().unwrap_or_default();
    let workers = program.workers();
    assert_eq!(workers.len(), 2);
    program.assert_workers_stay(&workers, "a refused action acted");
    let (_, later) = get_json(management, &format!("/events?since={since}"));
    let acted: Vec<&Value> = later["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["kind"] == "fork" || e["kind"] == "roll")
        .collect();
    assert!(acted.is_empty(), "a refused action acted: {acted:?}");
}

#[test]
fn admin_actions_are_403_without_a_configured_token() {
    let program = start("flaky", &[]);
    let management = program.management_addr();
    program.wait_for_200(management, "/health/ready");
    for path in [
        "/workers/restart",
        "/workers/scale?count=3",
        "/master/upgrade",
        "/master/stop",
    ] {
        for token in [None, Some(TOKEN)] {
            let (status, body) = post(management, path, token);
            assert_eq!(status, 403, "{path} {token:?}: {body}");
            assert!(
                body["error"]
                    .as_str()
                    .is_some_and(|e| e.contains("WIX_CLUSTER_ADMIN_TOKEN"))
            );
        }
    }
    let (_, info) = get_json(management, "/");
    assert_eq!(info["admin_actions"], false);
    assert_nothing_acted(&program, management);
}

#[test]
fn admin_actions_need_the_right_bearer_token_and_then_act() {
    let program = start(
        "flaky",
        &[
            ("WIX_CLUSTER_ADMIN_TOKEN", TOKEN),
            ("WIX_CLUSTER_WORKERS", "2"),
        ],
    );
    let management = program.management_addr();
    program.wait_for_200(management, "/health/ready");
    for path in [
        "/workers/restart",
        "/workers/scale?count=3",
        "/master/upgrade",
        "/master/stop",
    ] {
        let (status, body) = post(management, path, None);
        assert_eq!(status, 401, "{path}: {body}");
        let (status, body) = post(management, path, Some("wrong"));
        assert_eq!(status, 401, "{path}: {body}");
        assert_eq!(body["error"], "wrong admin token");
    }
    let no_challenge = http_request(management, "POST", "/workers/restart", &[]).expect("POST");
    assert_eq!(no_challenge.header("www-authenticate"), Some("Bearer"));
    assert_nothing_acted(&program, management);

    let (status, body) = post(management, "/workers/scale?count=0", Some(TOKEN));
    assert_eq!(status, 400, "{body}");
    let (status, body) = post(management, "/workers/scale?count=many", Some(TOKEN));
    assert_eq!(status, 400, "{body}");

    let (status, body) = post(management, "/workers/scale?count=3", Some(TOKEN));
    assert_eq!(status, 202, "{body}");
    assert_eq!(
        (body["from"].as_u64(), body["to"].as_u64()),
        (Some(2), Some(3))
    );
    let scaled = wait_until(PATIENCE, || {
        program.workers().len() == 3
            && http_get(management, "/health/ready").is_ok_and(|r| r.status == 200)
    });
    assert!(scaled, "not scaled to 3");
    let (_, info) = get_json(management, "/");
    assert_eq!(info["workers"]["desired"], 3);
    assert_eq!(info["admin_actions"], true);

    let before = pids(&live_rows(management));
    let (status, _) = post(management, "/workers/restart", Some(TOKEN));
    assert_eq!(status, 202);
    let restarted = wait_until(PATIENCE, || {
        let now = pids(&live_rows(management));
        now.len() == 3 && now.is_disjoint(&before)
    });
    assert!(restarted, "no rolling restart");
}

#[test]
fn the_mount_point_prefixes_every_page() {
    let program = start("management_page", &[("WIX_CLUSTER_MOUNT_POINT", "/admin/")]);
    let management = program.management_addr();
    program.wait_for_200(management, "/admin/health/ready");
    for root in ["/admin", "/admin/"] {
        let (status, info) = get_json(management, root);
        assert_eq!(status, 200, "{root}: {info}");
        assert_eq!(info["mount_point"], "/admin", "{root}");
    }
    for path in [
        "/admin/workers",
        "/admin/stats",
        "/admin/metrics",
        "/admin/custom",
    ] {
        assert_eq!(get(management, path).status, 200, "{path}");
    }
    for path in ["/", "/workers", "/custom", "/dashboard"] {
        assert_eq!(get(management, path).status, 404, "{path}");
    }
    let dashboard = get(management, "/admin/dashboard");
    assert_eq!(dashboard.status, 200);
    assert!(dashboard.body.contains("const BASE = \"/admin\";"));
}

#[test]
fn single_process_mode_serves_the_management_app_for_its_one_process() {
    let program = start(
        "management_page",
        &[
            ("WIX_CLUSTER_SINGLE", "1"),
            ("WIX_CLUSTER_ADMIN_TOKEN", TOKEN),
        ],
    );
    let management = program.management_addr();
    program.wait_for_200(management, "/health/ready");
    let (_, info) = get_json(management, "/");
    assert_eq!(info["mode"], "single_process");
    assert_eq!(info["workers"]["desired"], 1);
    let rows = live_rows(management);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["id"], 0);
    assert_eq!(rows[0]["pid"], program.pid());
    assert_eq!(rows[0]["state"], "ready");
    assert!(rows[0]["heartbeat_age_ms"].is_null() && rows[0]["requests"].is_null());
    assert_eq!(get(management, "/health/is_alive").status, 200);
    assert_eq!(get(management, "/health/deployment/test").status, 200);
    let (status, body) = post(management, "/workers/scale?count=2", Some(TOKEN));
    assert_eq!(status, 409, "{body}");
    let (status, body) = post(management, "/master/upgrade", Some(TOKEN));
    assert_eq!(status, 409, "{body}");
}

#[test]
fn the_upgrade_action_replaces_the_master_as_sigusr2_does() {
    let mut program = start(
        "management_page",
        &[
            ("WIX_CLUSTER_ADMIN_TOKEN", TOKEN),
            ("WIX_CLUSTER_WORKERS", "2"),
        ],
    );
    let management = program.management_addr();
    program.wait_for_200(management, "/health/ready");
    let (status, body) = post(management, "/master/upgrade", Some(TOKEN));
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["pid"], program.pid());
    let new_master = program.new_master_pid();
    assert_ne!(new_master, program.pid());
    program.assert_exits_with(0);
    let (_, info) = get_json(management, "/");
    assert_eq!(
        info["pid"], new_master,
        "the new master answers at the same address"
    );
    send_signal(new_master, nix::sys::signal::Signal::SIGKILL);
}

#[test]
fn the_stop_action_stops_the_cluster_as_sigterm_does() {
    for single in ["0", "1"] {
        let mut program = start(
            "management_page",
            &[
                ("WIX_CLUSTER_ADMIN_TOKEN", TOKEN),
                ("WIX_CLUSTER_WORKERS", "2"),
                ("WIX_CLUSTER_SINGLE", single),
            ],
        );
        let management = program.management_addr();
        program.wait_for_200(management, "/health/ready");
        let workers = program.workers();
        let (status, body) = post(management, "/master/stop", Some(TOKEN));
        assert_eq!(status, 202, "single {single}: {body}");
        assert_eq!(body["pid"], program.pid());
        program.assert_exits_with(0);
        program.wait_for_log("stop requested");
        for worker in workers {
            program.wait_until_gone(worker);
        }
    }
}

/// The discovery files in `dir`, parsed.
fn discovery_files(dir: &std::path::Path) -> Vec<(std::path::PathBuf, String, Value)> {
    let Ok(files) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    files
        .filter_map(Result::ok)
        .map(|f| f.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .filter_map(|p| {
            let text = std::fs::read_to_string(&p).ok()?;
            let json = serde_json::from_str(&text).ok()?;
            Some((p, text, json))
        })
        .collect()
}

#[test]
fn a_master_writes_a_private_discovery_file_without_the_token_and_removes_it_at_exit() {
    use std::os::unix::fs::PermissionsExt;
    let runtime = wix_cluster_suite::Scratch::new(env!("CARGO_TARGET_TMPDIR"), "discovery-exit");
    let xdg = runtime.path("");
    let mut program = start(
        "management_page",
        &[
            ("WIX_CLUSTER_ADMIN_TOKEN", TOKEN),
            ("XDG_RUNTIME_DIR", xdg.to_str().expect("a UTF-8 path")),
        ],
    );
    let management = program.management_addr();
    program.wait_for_200(management, "/health/ready");
    let dir = runtime.path("wix-cluster");
    let mut files = Vec::new();
    assert!(
        wait_until(PATIENCE, || {
            files = discovery_files(&dir);
            !files.is_empty()
        }),
        "no discovery file in {}",
        dir.display()
    );
    let (path, text, entry) = &files[0];
    assert_eq!(files.len(), 1);
    assert_eq!(
        path.file_name().and_then(|n| n.to_str()),
        Some(&*format!("{}.json", program.pid()))
    );
    assert_eq!(entry["pid"], program.pid());
    assert_eq!(entry["name"], "management_page");
    assert_eq!(entry["management_addr"], management.to_string());
    assert!((entry["started_at"].as_f64().unwrap_or(0.0) - now_seconds()).abs() < 600.0);
    assert!(
        !text.contains(TOKEN),
        "the token is in the discovery file: {text}"
    );
    let mode = |p: &std::path::Path| std::fs::metadata(p).map(|m| m.permissions().mode() & 0o777);
    assert_eq!(mode(&dir).ok(), Some(0o700));
    assert_eq!(mode(path).ok(), Some(0o600));
    program.signal(nix::sys::signal::Signal::SIGTERM);
    program.assert_exits_with(0);
    assert!(
        discovery_files(&dir).is_empty(),
        "the file outlived its master"
    );
}

#[test]
fn after_an_upgrade_only_the_new_masters_discovery_file_is_left() {
    let runtime = wix_cluster_suite::Scratch::new(env!("CARGO_TARGET_TMPDIR"), "discovery-upgrade");
    let xdg = runtime.path("");
    let mut program = start(
        "management_page",
        &[("XDG_RUNTIME_DIR", xdg.to_str().expect("a UTF-8 path"))],
    );
    let management = program.management_addr();
    program.wait_for_200(management, "/health/ready");
    let dir = runtime.path("wix-cluster");
    program.signal(nix::sys::signal::Signal::SIGUSR2);
    let new_master = program.new_master_pid();
    program.assert_exits_with(0);
    let mut pids = Vec::new();
    let only_new = wait_until(PATIENCE, || {
        pids = discovery_files(&dir)
            .iter()
            .filter_map(|(_, _, entry)| entry["pid"].as_u64())
            .collect();
        pids == [u64::from(new_master)]
    });
    send_signal(new_master, nix::sys::signal::Signal::SIGKILL);
    assert!(only_new, "discovery files after the upgrade: {pids:?}");
}

#[test]
fn a_taken_management_port_is_logged_and_the_cluster_keeps_serving() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a port");
    let addr = taken.local_addr().expect("its address").to_string();
    let program = start("flaky", &[("WIX_CLUSTER_MANAGEMENT_ADDR", &addr)]);
    let app = program.listening_addr();
    let line = program.wait_for_log("cannot start the management app");
    assert!(line.contains("ERROR") && line.contains(&addr), "{line}");
    program.wait_for_200(app, "/");
    assert!(!program.log().contains("management app listening on"));
}

#[test]
fn a_bad_mount_point_is_refused_at_start_up() {
    let mut program = start("flaky", &[("WIX_CLUSTER_MOUNT_POINT", "admin")]);
    program.assert_exits_with(2);
    assert!(program.log().contains("WIX_CLUSTER_MOUNT_POINT"));
}

/// Sends `request` (a whole HTTP request head) on a new connection and reads the
/// response to its end.
fn raw(addr: SocketAddr, request: &str) -> Response {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    stream.write_all(request.as_bytes()).expect("send");
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes).expect("read the response");
    let text = String::from_utf8_lossy(&bytes);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    Response {
        status,
        headers: Vec::new(),
        body: body.to_owned(),
    }
}

/// `GET path` with `Host: host` (no Host header at all for `None`), over HTTP/1.1 or,
/// without a host, HTTP/1.0.
fn get_with_host(addr: SocketAddr, path: &str, host: Option<&str>) -> Response {
    match host {
        Some(host) => raw(
            addr,
            &format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
        ),
        None => raw(addr, &format!("GET {path} HTTP/1.0\r\n\r\n")),
    }
}

#[test]
fn pages_answer_only_to_the_management_apps_own_host_names() {
    let program = start(
        "management_page",
        &[(
            "WIX_CLUSTER_MANAGEMENT_HOSTS",
            "admin.internal, Ops.Example",
        )],
    );
    let management = program.management_addr();
    program.wait_for_200(management, "/health/ready");
    let port = management.port();
    // A DNS-rebinding page's requests carry its own name: every page refuses them,
    // the event log (panic messages) and your own pages included.
    for host in [
        format!("evil.example:{port}"),
        "evil.example".to_owned(),
        format!("localhost.evil.example:{port}"),
        format!("admin.internal.evil:{port}"),
    ] {
        for path in [
            "/",
            "/events",
            "/events/stream",
            "/dashboard",
            "/custom",
            "/no/such",
        ] {
            let response = get_with_host(management, path, Some(&host));
            assert_eq!(response.status, 421, "{host} {path}: {response:?}");
            assert!(
                response.body.contains("WIX_CLUSTER_MANAGEMENT_HOSTS"),
                "{host} {path}: {response:?}"
            );
        }
    }
    let refused = raw(
        management,
        "POST /workers/restart HTTP/1.1\r\nHost: evil.example\r\nAuthorization: Bearer x\r\n\
         Content-Length: 0\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(refused.status, 421, "{refused:?}");
    // Loopback names, the address it is bound to, and the names configured (in any
    // case, with or without the port) are answered.
    for host in [
        format!("localhost:{port}"),
        "LocalHost".to_owned(),
        format!("127.0.0.1:{port}"),
        "127.0.0.1".to_owned(),
        format!("[::1]:{port}"),
        management.to_string(),
        format!("admin.internal:{port}"),
        "ADMIN.internal".to_owned(),
        "ops.example".to_owned(),
    ] {
        for path in ["/", "/events", "/custom"] {
            let response = get_with_host(management, path, Some(&host));
            assert_eq!(response.status, 200, "{host} {path}: {response:?}");
        }
    }
    // HTTP/1.0 without a Host header (no browser sends that) is answered.
    let bare = get_with_host(management, "/health/ready", None);
    assert_eq!(bare.status, 200, "{bare:?}");
}

#[test]
fn the_bearer_scheme_is_case_insensitive_and_tokens_are_trimmed_both_sides() {
    // The configured token's surrounding blanks (a token read from a file) are not
    // part of it, as they are not of the presented one.
    let program = start(
        "flaky",
        &[
            ("WIX_CLUSTER_ADMIN_TOKEN", &format!("  {TOKEN}\n")),
            ("WIX_CLUSTER_WORKERS", "2"),
        ],
    );
    let management = program.management_addr();
    program.wait_for_200(management, "/health/ready");
    let post_with = |authorization: &str| {
        let response = http_request(
            management,
            "POST",
            "/workers/scale?count=2",
            &[("Authorization", authorization)],
        )
        .expect("POST");
        response.status
    };
    for authorization in [
        format!("Bearer {TOKEN}"),
        format!("bearer {TOKEN}"),
        format!("BEARER {TOKEN}"),
        format!("BeArEr   {TOKEN}  "),
    ] {
        assert_eq!(post_with(&authorization), 202, "{authorization:?}");
    }
    for authorization in [
        format!("Basic {TOKEN}"),
        format!("Bearer{TOKEN}"),
        format!("Bearer {TOKEN}x"),
        format!("Bearer {}", &TOKEN[1..]),
        "Bearer ".to_owned(),
        format!("Bearer x{TOKEN}"),
    ] {
        assert_eq!(post_with(&authorization), 401, "{authorization:?}");
    }
}

#[test]
fn a_bad_management_host_is_refused_at_start_up() {
    let mut program = start(
        "flaky",
        &[("WIX_CLUSTER_MANAGEMENT_HOSTS", "admin.example:8084")],
    );
    program.assert_exits_with(2);
    assert!(program.log().contains("WIX_CLUSTER_MANAGEMENT_HOSTS"));
}
