//! Cluster-wide metrics through the `metrics` facade (`examples/metrics.rs`): what the
//! app and a library it uses record in every worker reaches the master's `/metrics`
//! summed (counters), merged (histograms) or per worker (gauges); counters never go
//! backwards when workers die, roll or the master is upgraded; `http::serve`'s request
//! metrics count exactly what was served; a flood of series keeps the master bounded.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use nix::sys::signal::Signal;
use prometheus_parse::{Sample, Scrape, Value};
use wix_cluster_suite::{
    PATIENCE, Program, http_get, http_get_within, promtool_finds_nothing, rss_bytes, send_signal,
    wait_until,
};

fn start(env: &[(&str, &str)]) -> (Program, SocketAddr, SocketAddr) {
    let mut all = vec![
        ("PORT", "0"),
        ("WIX_CLUSTER_MANAGEMENT_ADDR", "127.0.0.1:0"),
    ];
    all.extend_from_slice(env);
    let program = Program::start("metrics", &all);
    let app = program.listening_addr();
    let management = program.management_addr();
    program.wait_for_workers(2);
    program.wait_for_200(app, "/");
    (program, app, management)
}

/// `/metrics` as text.
fn metrics_text(management: SocketAddr) -> String {
    let response = http_get(management, "/metrics").expect("GET /metrics");
    assert_eq!(response.status, 200, "{response:?}");
    response.body
}

fn parse(text: &str) -> Scrape {
    Scrape::parse(text.lines().map(|line| Ok(line.to_owned()))).expect("Prometheus text format")
}

fn samples<'a>(scrape: &'a Scrape, name: &str) -> Vec<&'a Sample> {
    scrape.samples.iter().filter(|s| s.metric == name).collect()
}

/// The value of the one sample of `name` whose labels include `labels`.
fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples(scrape, name)
        .into_iter()
        .find(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match &s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            other => panic!("{name} is not a number: {other:?}"),
        })
}

/// Waits until `check` holds for a scrape; returns that scrape's text.
fn scrape_until(
    management: SocketAddr,
    what: &str,
    mut check: impl FnMut(&Scrape) -> bool,
) -> String {
    let mut text = String::new();
    let seen = wait_until(PATIENCE, || {
        text = metrics_text(management);
        check(&parse(&text))
    });
    assert!(seen, "{what}; the last /metrics:\n{text}");
    text
}

/// Sends `n` requests for `path`, each on a new connection, so that both workers take
/// some, each answered with `status`.
fn requests(app: SocketAddr, path: &str, n: usize, status: u16) {
    for _ in 0..n {
        let response = http_get(app, path).expect("request");
        assert_eq!(response.status, status, "{response:?}");
    }
}

#[test]
fn the_apps_and_a_librarys_metrics_add_up_across_the_workers_and_pass_promtool() {
    let (program, app, management) = start(&[]);
    requests(app, "/job?kind=resize", 30, 200);
    requests(app, "/job?kind=crop", 20, 200);
    // Both workers served some (their request counts, as of their heartbeats).
    let served = |s: &Scrape, worker| {
        value(
            s,
            "wix_cluster_worker_requests_total",
            &[("worker", worker)],
        )
        .unwrap_or(0.0)
    };
    let text = scrape_until(management, "the library's jobs add up to 50", |s| {
        value(s, "support_jobs_processed_total", &[("kind", "resize")]) == Some(30.0)
            && value(s, "support_jobs_processed_total", &[("kind", "crop")]) == Some(20.0)
            && served(s, "1") > 0.0
            && served(s, "2") > 0.0
    });
    let scrape = parse(&text);
    // The app's own counter, with its label, summed over the workers.
    assert_eq!(
        value(&scrape, "app_jobs_requested_total", &[("kind", "resize")]),
        Some(30.0)
    );
    // A gauge per worker, labelled with its slot.
    for worker in ["1", "2"] {
        assert_eq!(
            value(&scrape, "app_worker_generation", &[("worker", worker)]),
            Some(0.0),
            "{text}"
        );
    }
    // The library's histogram merged bucket by bucket: every job took 30 ms.
    let histogram = samples(&scrape, "support_job_duration_seconds")
        .into_iter()
        .find(|s| s.labels.get("kind") == Some("resize"))
        .map(|s| s.value.clone());
    match histogram {
        Some(Value::Histogram(buckets)) => {
            let at = |le: f64| buckets.iter().find(|b| b.less_than == le).map(|b| b.count);
            assert_eq!(at(0.025), Some(0.0), "{buckets:?}");
            assert_eq!(at(0.05), Some(30.0), "{buckets:?}");
            assert_eq!(at(f64::INFINITY), Some(30.0), "{buckets:?}");
        }
        other => panic!("support_job_duration_seconds: {other:?}\n{text}"),
    }
    assert!(
        text.contains("support_job_duration_seconds_count{kind=\"resize\"} 30\n"),
        "{text}"
    );
    assert!(
        scrape
            .docs
            .get("support_jobs_processed_total")
            .map(String::as_str)
            == Some("Jobs the support library processed, by kind."),
        "the description given with describe_counter! is the HELP: {:?}",
        scrape.docs.get("support_jobs_processed_total")
    );
    // The master's and every worker's descriptors.
    for worker in ["1", "2", "master"] {
        for name in ["process_open_fds", "process_max_fds"] {
            let n = value(&scrape, name, &[("worker", worker)]);
            assert!(
                n.is_some_and(|n| n > 0.0),
                "{name}{{worker={worker}}}: {n:?}"
            );
        }
    }
    let lag = samples(&scrape, "wix_cluster_event_loop_lag_seconds");
    assert!(
        matches!(lag.first().map(|s| &s.value), Some(Value::Histogram(_))),
        "the event-loop lag is a histogram:\n{text}"
    );
    promtool_finds_nothing(&text);
    drop(program);
}

/// The counters this test follows, from one scrape.
fn counters(management: SocketAddr) -> BTreeMap<String, f64> {
    let scrape = parse(&metrics_text(management));
    let mut out = BTreeMap::new();
    for name in ["app_jobs_requested_total", "support_jobs_processed_total"] {
        if let Some(v) = value(&scrape, name, &[("kind", "a")]) {
            out.insert(name.to_owned(), v);
        }
    }
    if let Some(v) = value(
        &scrape,
        "http_server_request_duration_seconds_count",
        &[("http_response_status_class", "2xx")],
    ) {
        out.insert("requests".to_owned(), v);
    }
    out
}

/// Every counter of `after` is at least its value in `before`.
fn assert_monotonic(step: &str, before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>) {
    for (name, was) in before {
        let now = after.get(name).copied().unwrap_or(0.0);
        assert!(now >= *was, "after {step}, {name} went from {was} to {now}");
    }
}

/// Sends `n` jobs and waits until the master counted them all.
fn jobs(app: SocketAddr, management: SocketAddr, n: usize, expected: f64) -> BTreeMap<String, f64> {
    requests(app, "/job?kind=a", n, 200);
    let mut now = BTreeMap::new();
    let counted = wait_until(PATIENCE, || {
        now = counters(management);
        now.get("app_jobs_requested_total") == Some(&expected)
    });
    assert!(counted, "expected {expected} jobs: {now:?}");
    now
}

#[test]
fn counters_never_go_backwards_across_a_kill_a_rolling_restart_and_an_upgrade() {
    let (program, app, management) = start(&[]);
    let mut before = jobs(app, management, 20, 20.0);

    // kill -9 of a worker: its totals stay in the sums.
    let victim = program.workers()[0];
    send_signal(victim, Signal::SIGKILL);
    program.wait_until_gone(victim);
    let after = counters(management);
    assert_monotonic("a kill -9", &before, &after);
    program.wait_for_workers(2);
    before = jobs(app, management, 10, 30.0);

    // A rolling restart: every worker replaced gracefully.
    let old = program.workers();
    program.signal(Signal::SIGHUP);
    let rolled = wait_until(PATIENCE, || {
        let now = program.workers();
        now.len() == 2 && now.iter().all(|pid| !old.contains(pid))
    });
    assert!(rolled, "the workers were not replaced");
    assert_monotonic("a rolling restart", &before, &counters(management));
    before = jobs(app, management, 10, 40.0);

    // A master upgrade: the new master goes on from the old one's totals.
    program.signal(Signal::SIGUSR2);
    let new_master = program.new_master_pid();
    let mut program = program;
    let exited = program.wait_exit(PATIENCE);
    assert!(exited.is_some(), "the old master did not exit");
    let after = counters(management);
    assert_monotonic("a master upgrade", &before, &after);
    assert!(wix_cluster_suite::is_alive(new_master));
    jobs(app, management, 5, 45.0);
}

/// The count of GET requests answered 2xx, from one scrape (0 before the first).
fn served(scrape: &Scrape) -> f64 {
    value(
        scrape,
        "http_server_request_duration_seconds_count",
        &[
            ("http_request_method", "GET"),
            ("http_response_status_class", "2xx"),
        ],
    )
    .unwrap_or(0.0)
}

#[test]
fn nothing_counted_is_lost_when_the_worker_that_counted_it_is_killed_at_once() {
    let (program, app, management) = start(&[]);
    let served_before = served(&parse(&metrics_text(management)));
    let mut last = None;
    for _ in 0..200 {
        let response = http_get(app, "/job?kind=a").expect("request");
        assert_eq!(response.status, 200, "{response:?}");
        last = response.header("x-worker-pid").map(str::to_owned);
    }
    // The worker that served the last request, killed the moment it answered: what it
    // counted was never sent anywhere, it is in the segment the master maps.
    let victim: u32 = last.and_then(|pid| pid.parse().ok()).expect("x-worker-pid");
    send_signal(victim, Signal::SIGKILL);
    let expected = served_before + 200.0;
    let exact = |scrape: &Scrape| {
        value(scrape, "app_jobs_requested_total", &[("kind", "a")]) == Some(200.0)
            && served(scrape) == expected
    };
    scrape_until(management, "200 jobs and 200 requests counted", exact);
    program.wait_until_gone(victim);
    // For good: once the dead worker's readings are folded into the retired totals (2 s
    // after its end), and with its successor running.
    program.wait_for_workers(2);
    let folded = std::time::Instant::now() + std::time::Duration::from_secs(4);
    while std::time::Instant::now() < folded {
        let text = metrics_text(management);
        assert!(
            exact(&parse(&text)),
            "a count changed after the kill:\n{text}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn a_scrape_right_after_an_increment_shows_it() {
    let (_program, app, management) = start(&[]);
    // Until each worker has declared the series (its first increment does).
    let mut n = 0.0;
    let declared = wait_until(PATIENCE, || {
        let response = http_get(app, "/job?kind=fresh").expect("request");
        n += 1.0;
        let scrape = parse(&metrics_text(management));
        response.header("x-worker-pid").is_some()
            && value(&scrape, "app_jobs_requested_total", &[("kind", "fresh")]) == Some(n)
            && n >= 10.0
    });
    assert!(declared, "the series did not show on both workers");
    // Each scrape, sent as soon as the answer came, counts the request it answered:
    // nothing waits for a flush.
    for _ in 0..50 {
        http_get(app, "/job?kind=fresh").expect("request");
        n += 1.0;
        let text = metrics_text(management);
        let seen = value(
            &parse(&text),
            "app_jobs_requested_total",
            &[("kind", "fresh")],
        );
        assert_eq!(seen, Some(n), "a scrape right after the increment:\n{text}");
    }
}

#[test]
fn request_metrics_count_exactly_what_was_served_and_can_be_switched_off() {
    let (program, app, management) = start(&[]);
    requests(app, "/status/201", 7, 201);
    requests(app, "/status/404", 5, 404);
    requests(app, "/status/503", 3, 503);
    // The readiness probes of `start` were GET / (2xx) too: count 2xx apart.
    let class = |s: &Scrape, class: &str| {
        value(
            s,
            "http_server_request_duration_seconds_count",
            &[
                ("http_request_method", "GET"),
                ("http_response_status_class", class),
            ],
        )
    };
    let gauges = [
        "http_server_active_requests",
        "http_server_open_connections",
    ];
    let text = scrape_until(management, "4xx and 5xx counted", |s| {
        class(s, "4xx") == Some(5.0)
            && class(s, "5xx") == Some(3.0)
            && gauges.iter().all(|gauge| {
                ["1", "2"]
                    .iter()
                    .all(|worker| value(s, gauge, &[("worker", worker)]).is_some())
            })
    });
    let scrape = parse(&text);
    let ok = class(&scrape, "2xx").unwrap_or_default();
    assert!(ok >= 7.0, "{text}");
    // Every request is one observation: the +Inf buckets add up to the counts.
    let observed: f64 = samples(&scrape, "http_server_request_duration_seconds")
        .iter()
        .map(|s| match &s.value {
            Value::Histogram(buckets) => buckets
                .iter()
                .find(|b| b.less_than == f64::INFINITY)
                .map_or(0.0, |b| b.count),
            _ => 0.0,
        })
        .sum();
    assert_eq!(observed, ok + 8.0, "{text}");
    drop(program);

    let (program, app, management) = start(&[("WIX_CLUSTER_REQUEST_METRICS", "0")]);
    requests(app, "/status/201", 5, 201);
    requests(app, "/job?kind=a", 1, 200);
    let text = scrape_until(management, "the app's own metric arrives", |s| {
        value(s, "app_jobs_requested_total", &[("kind", "a")]) == Some(1.0)
    });
    assert!(
        !text.contains("http_server_"),
        "request metrics are off:\n{text}"
    );
    drop(program);
}

#[test]
fn a_flood_of_series_and_increments_keeps_the_master_bounded() {
    let (program, app, management) = start(&[]);
    let before = rss_bytes(program.pid());
    // Each request records 5,000 distinct series (past the 1,000 a process may have) and
    // a million increments of one counter.
    for _ in 0..4 {
        // A million increments in a debug build: slow on a busy machine.
        let flooded =
            http_get_within(app, "/flood?series=5000&increments=1000000", PATIENCE).expect("flood");
        assert_eq!(flooded.status, 200, "{flooded:?}");
    }
    let text = scrape_until(management, "the flood's increments arrive", |s| {
        value(s, "flood_one_total", &[]) == Some(4_000_000.0)
    });
    let series = text
        .lines()
        .filter(|line| line.starts_with("flood_") && !line.starts_with("flood_one"))
        .count();
    // Each worker keeps at most 1,000 series in all (a few are the app's own).
    assert!(series <= 2 * 1000, "{series} flood series in /metrics");
    assert!(series >= 900, "{series} flood series in /metrics");
    let grown = rss_bytes(program.pid()).saturating_sub(before);
    assert!(grown < 64 << 20, "the master grew by {grown} bytes");
    // The workers dropped what was past their bound: logged by them, and counted for
    // the cluster (each request asks for 5,000 series and a worker keeps at most 1,000).
    program.wait_for_log("a metric was dropped");
    scrape_until(management, "the drops are counted", |s| {
        value(s, "wix_cluster_metrics_dropped_total", &[]).is_some_and(|n| n >= 16_000.0)
    });
}

#[test]
fn in_single_process_mode_the_same_recorder_serves_metrics() {
    let program = Program::start(
        "metrics",
        &[
            ("PORT", "0"),
            ("WIX_CLUSTER_MANAGEMENT_ADDR", "127.0.0.1:0"),
            ("WIX_CLUSTER_SINGLE", "1"),
        ],
    );
    let app = program.listening_addr();
    let management = program.management_addr();
    program.wait_for_200(app, "/");
    requests(app, "/job?kind=solo", 4, 200);
    let text = scrape_until(management, "the one process's metrics", |s| {
        value(s, "app_jobs_requested_total", &[("kind", "solo")]) == Some(4.0)
            && value(s, "support_jobs_processed_total", &[("kind", "solo")]) == Some(4.0)
    });
    let scrape = parse(&text);
    // The one process is worker 0.
    assert_eq!(
        value(&scrape, "app_worker_generation", &[("worker", "0")]),
        Some(0.0),
        "{text}"
    );
    assert!(
        text.contains("http_server_request_duration_seconds_count{"),
        "{text}"
    );
    promtool_finds_nothing(&text);
}

#[test]
fn failed_upgrades_leave_no_totals_loop_running() {
    // A deployed copy of the example, so that its binary can be replaced on disk.
    let scratch =
        wix_cluster_suite::Scratch::new(env!("CARGO_TARGET_TMPDIR"), "metrics-failed-upgrades");
    let binary = scratch.deploy(&wix_cluster_suite::example_path("metrics"), "metrics");
    let program = Program::start_path(&binary, &[("PORT", "0"), ("WIX_CLUSTER_WORKERS", "2")]);
    let management = program.management_addr();
    program.wait_for_workers(2);
    // A build that exits at once, then 20 upgrades to it.
    let staged = scratch.path("metrics.staged");
    std::fs::write(&staged, "#!/bin/sh\nexit 3\n").expect("write the failing binary");
    let mode = std::os::unix::fs::PermissionsExt::from_mode(0o755);
    std::fs::set_permissions(&staged, mode).expect("make it executable");
    std::fs::rename(&staged, &binary).expect("rename it into place");
    for attempt in 1..=20 {
        program.signal(Signal::SIGUSR2);
        let failed = wait_until(PATIENCE, || {
            program.log().matches("upgrade failed").count() >= attempt
        });
        assert!(failed, "upgrade {attempt} did not fail");
    }
    let loops = |s: &Scrape| value(s, "wix_cluster_upgrade_totals_loops", &[]);
    scrape_until(management, "every totals loop ends", |s| {
        loops(s) == Some(0.0)
    });
    // And none comes back over a window. (The loops are tasks, not threads: the
    // master's thread count moves with tokio's blocking pool, which `/metrics` uses.)
    for _ in 0..10 {
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert_eq!(loops(&parse(&metrics_text(management))), Some(0.0));
    }
}

/// Every `_count` of the histogram `name` in a scrape, by its label set.
fn histogram_counts(scrape: &Scrape, name: &str) -> BTreeMap<String, f64> {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .filter_map(|s| match &s.value {
            Value::Histogram(buckets) => {
                let count = buckets.last().map_or(0.0, |b| b.count);
                Some((format!("{:?}", s.labels), count))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn a_roll_to_other_buckets_keeps_every_observation_and_no_series_goes_backwards() {
    let scratch = wix_cluster_suite::Scratch::new(env!("CARGO_TARGET_TMPDIR"), "metrics-layouts");
    let file = scratch.path("buckets");
    std::fs::write(&file, "0.1,1").expect("write the buckets");
    let file_text = file.to_string_lossy().into_owned();
    let program = Program::start_fixture(
        "layouts",
        &[
            ("PORT", "0"),
            ("WIX_CLUSTER_MANAGEMENT_ADDR", "127.0.0.1:0"),
            ("BUCKETS_FILE", &file_text),
        ],
    );
    let app = program.listening_addr();
    let management = program.management_addr();
    let old = program.wait_for_workers(2);
    requests(app, "/observe?v=0.2", 10, 200);
    let total =
        |s: &Scrape| -> f64 { histogram_counts(s, "layout_latency_seconds").values().sum() };
    scrape_until(management, "10 observations", |s| total(s) == 10.0);

    // The new layout, and a roll to workers that read it.
    std::fs::write(&file, "0.5,5").expect("write the new buckets");
    program.signal(Signal::SIGHUP);
    let mut last = histogram_counts(&parse(&metrics_text(management)), "layout_latency_seconds");
    let rolled = wait_until(PATIENCE, || {
        let now = program.workers();
        let scrape = parse(&metrics_text(management));
        let counts = histogram_counts(&scrape, "layout_latency_seconds");
        for (series, count) in &last {
            let after = counts.get(series).copied().unwrap_or(0.0);
            assert!(after >= *count, "{series} went from {count} to {after}");
        }
        last = counts;
        now.len() == 2 && now.iter().all(|pid| !old.contains(pid))
    });
    assert!(rolled, "the workers were not replaced");
    requests(app, "/observe?v=0.2", 5, 200);
    let text = scrape_until(management, "all 15 observations", |s| total(s) == 15.0);
    // The old layout's 10 stay in the series as it was, the new layout's 5 apart.
    let scrape = parse(&text);
    let counts = histogram_counts(&scrape, "layout_latency_seconds");
    assert_eq!(counts.len(), 2, "{counts:?}");
    assert!(
        text.contains("layout_latency_seconds_count 10\n"),
        "the old layout's series:\n{text}"
    );
    assert!(
        text.contains("layout_latency_seconds_count{wix_cluster_buckets=\"0.5,5\"} 5\n"),
        "the new layout's series:\n{text}"
    );
    promtool_finds_nothing(&text);
}

#[test]
fn names_that_collide_once_made_valid_are_one_family_logged_once() {
    let (program, app, management) = start(&[]);
    // `queue-depth` and `queue_depth` are both `queue_depth` for Prometheus.
    for name in ["queue-depth", "queue_depth"] {
        let set = http_get(app, &format!("/gauge/{name}/3")).expect("set a gauge");
        assert_eq!(set.status, 200, "{set:?}");
    }
    let mut text = String::new();
    let both = wait_until(PATIENCE, || {
        text = metrics_text(management);
        program.log().contains("queue-depth and queue_depth")
            || program.log().contains("queue_depth and queue-depth")
    });
    assert!(both, "the collision was not logged");
    let families = text
        .lines()
        .filter(|line| *line == "# TYPE queue_depth gauge")
        .count();
    assert_eq!(families, 1, "one family: {text}");
    promtool_finds_nothing(&text);
    // Logged once, however many scrapes see it.
    for _ in 0..3 {
        metrics_text(management);
    }
    let logged = program
        .log()
        .lines()
        .filter(|line| line.contains("have the same name once made valid"))
        .count();
    assert_eq!(logged, 1, "logged {logged} times");
}
