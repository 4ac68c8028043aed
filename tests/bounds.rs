//! The master's memory has a bound against every worker: one that stops reading while
//! the master broadcasts is treated as stalled and replaced, one that floods the master
//! with messages and metric names is cut off at its budgets, and a user's metric name
//! can never break `/metrics`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use wix_cluster_suite::{
    PATIENCE, Program, http_get, http_get_within, rss_bytes, send_signal, wait_until,
};

fn probe() -> (Program, SocketAddr) {
    let program = Program::start_fixture(
        "exchange_probe",
        &[("PORT", "0"), ("WIX_CLUSTER_WORKERS", "2")],
    );
    let addr = program.listening_addr();
    program.wait_for_workers(2);
    program.wait_for_200(addr, "/notes");
    // Both workers ready (one answering is not both): what the tests then hold the
    // master to.
    program.wait_for_200(program.management_addr(), "/health/ready");
    (program, addr)
}

/// The highest RSS of `pid` seen while `until` is false (checked every 50 ms, for at
/// most `patience`).
fn peak_rss(pid: u32, patience: Duration, mut until: impl FnMut() -> bool) -> u64 {
    let started = Instant::now();
    let mut peak = 0;
    while started.elapsed() < patience && !until() {
        peak = peak.max(rss_bytes(pid));
        std::thread::sleep(Duration::from_millis(50));
    }
    peak.max(rss_bytes(pid))
}

#[test]
fn a_worker_that_stops_reading_is_replaced_and_the_master_stays_bounded() {
    let (program, addr) = probe();
    let management = program.management_addr();
    let refused = |metrics: &str| {
        metrics
            .lines()
            .find_map(|line| line.strip_prefix("wix_cluster_exchange_backlog_refused_total "))
            .and_then(|value| value.parse::<f64>().ok())
    };
    // Written from the start.
    let mut at_start = None;
    wait_until(PATIENCE, || {
        at_start = refused(&program.wait_for_200(management, "/metrics").body);
        at_start.is_some()
    });
    assert_eq!(at_start, Some(0.0));
    let workers = program.workers();
    let stopped = workers[0];
    let before = rss_bytes(program.pid());
    send_signal(stopped, Signal::SIGSTOP);
    // 240 MiB of broadcasts, 1.5 times what a worker's backlog may hold: the live worker
    // reads them, the stopped one cannot. (With 600 MiB, on a machine starved by a
    // build beside the suite, the live worker could not keep up either and was replaced
    // as stalled too, its answer cut.)
    let asked =
        http_get_within(addr, "/ask/flood?mb=240", PATIENCE).expect("the live worker answers");
    assert_eq!(asked.status, 200, "{asked:?}");
    let peak = peak_rss(program.pid(), Duration::from_secs(40), || {
        program.log().contains("waited unread on its channel")
    });
    let line = program.wait_for_log("waited unread on its channel");
    assert!(line.contains("stalled"), "{line}");
    program.wait_until_gone(stopped);
    let mut now = Vec::new();
    let replaced = wait_until(PATIENCE, || {
        now = program.workers();
        now.len() == 2 && !now.contains(&stopped)
    });
    assert!(replaced, "{now:?}");
    assert!(
        peak < before + (400 << 20),
        "the master grew from {before} to {peak} bytes while one worker did not read"
    );
    // The broadcasts the stopped worker had no room for were an error to the caller,
    // and counted.
    let line = program.wait_for_log("master could not do what");
    assert!(line.contains("does not keep up"), "{line}");
    let mut counted = None;
    wait_until(PATIENCE, || {
        counted = refused(&program.wait_for_200(management, "/metrics").body);
        counted.is_some_and(|n| n > 0.0)
    });
    assert!(counted.is_some_and(|n| n > 0.0), "{counted:?}");
}

#[test]
fn a_worker_flooding_the_master_leaves_it_bounded_and_ready() {
    let (program, addr) = probe();
    let management = program.management_addr();
    let before = rss_bytes(program.pid());
    // 192 MiB of messages to a master-side subscriber that never reads, and 20,000
    // metric names, while readiness is probed.
    let flood = std::thread::spawn(move || {
        // The answers come once the flood is sent, which takes long on a busy machine.
        let sent = http_get_within(addr, "/flood-master?count=768&kb=256", PATIENCE);
        let named = http_get_within(addr, "/names?count=20000", PATIENCE);
        (sent, named)
    });
    let mut slowest = Duration::ZERO;
    let mut peak = 0;
    let mut probes = 0;
    while !flood.is_finished() || probes < 20 {
        let asked = Instant::now();
        let ready = http_get(management, "/health/ready").expect("readiness answers");
        slowest = slowest.max(asked.elapsed());
        assert_eq!(ready.status, 200, "{ready:?}");
        peak = peak.max(rss_bytes(program.pid()));
        probes += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    let (sent, named) = flood.join().expect("flood thread");
    let sent = sent.expect("the flood was answered");
    assert!(sent.body.contains("sent="), "{sent:?}");
    assert_eq!(named.expect("names answered").status, 200);
    program.wait_for_log("dropping a message on topic \"probe.sink\"");
    program.wait_for_log("a metric was dropped");
    // Every probe answered 200 (above); a generous bound on the slowest, which a kubelet
    // would still wait for. How fast they are under a flood is a speed target, measured
    // by bench/run's management section.
    assert!(
        slowest < Duration::from_secs(10),
        "/health/ready took {slowest:?} during the flood"
    );
    assert!(
        peak < before + (300 << 20),
        "the master grew from {before} to {peak} bytes under the flood"
    );
    // The names arrive in the workers' next batches.
    let mut names = 0;
    wait_until(PATIENCE, || {
        let metrics = program.wait_for_200(management, "/metrics").body;
        names = metrics
            .lines()
            .filter(|line| line.starts_with("flood_name_"))
            .count();
        names > 0
    });
    assert!(
        (1..=2 * 1000).contains(&names),
        "{names} flood_name_ series (at most 1000 per worker)"
    );
}

/// The label names of a sample line of the text format (`name{a="1",b="2"} v`).
fn label_names(line: &str) -> Vec<String> {
    let Some((_, rest)) = line.split_once('{') else {
        return Vec::new();
    };
    let mut names = Vec::new();
    let mut rest = rest;
    while let Some((name, after)) = rest.split_once("=\"") {
        names.push(name.trim_start_matches(',').to_owned());
        // Skip the value, escapes included.
        let mut end = 0;
        let bytes = after.as_bytes();
        while end < bytes.len() && bytes[end] != b'"' {
            end += if bytes[end] == b'\\' { 2 } else { 1 };
        }
        rest = after.get(end + 1..).unwrap_or_default();
        if rest.starts_with('}') {
            break;
        }
    }
    names
}

#[test]
fn a_custom_metric_named_like_a_built_in_family_leaves_metrics_whole() {
    let (program, addr) = probe();
    let management = program.management_addr();
    for route in ["/collide", "/hostile-names"] {
        let answered = http_get(addr, route).expect("served");
        assert_eq!(answered.status, 200, "{answered:?}");
    }
    // The metrics arrive a moment later; each scrape registers what has arrived.
    let mut metrics = String::new();
    let warned = wait_until(PATIENCE, || {
        metrics = program.wait_for_200(management, "/metrics").body;
        let log = program.log();
        log.contains("is left out of /metrics")
            && log.contains("in /metrics, family hostile_labels_total")
            && log.contains("in /metrics, family hostile_family_total")
            && metrics.contains("hostile_latency_bucket")
    });
    assert!(warned, "no collision was seen:\n{metrics}");
    wix_cluster_suite::promtool_finds_nothing(&metrics);
    let scrape = prometheus_parse::Scrape::parse(metrics.lines().map(|l| Ok(l.to_owned())))
        .expect("the page parses");
    // Each built-in series once, with its real value.
    let only = |name: &str, labels: &[(&str, &str)]| {
        let found: Vec<f64> = scrape
            .samples
            .iter()
            .filter(|s| s.metric == name)
            .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => f64::NAN,
            })
            .collect();
        assert_eq!(found.len(), 1, "{name}{labels:?}: {found:?}\n{metrics}");
        found[0]
    };
    assert_eq!(only("wix_cluster_workers_desired", &[]), 2.0);
    assert_eq!(only("wix_cluster_workers_forked_total", &[]), 2.0);
    assert_eq!(only("wix_cluster_workers_ready", &[]), 2.0);
    assert_eq!(only("wix_cluster_failing", &[]), 0.0);
    assert!(only("process_resident_memory_bytes", &[("worker", "1")]) > 1.0);
    // Written from the start.
    assert!(only("wix_cluster_metrics_dropped_total", &[]) >= 0.0);
    // No sample has two labels of one name, nor a reserved name.
    for line in metrics.lines().filter(|line| !line.starts_with('#')) {
        let names = label_names(line);
        let unique: std::collections::HashSet<&String> = names.iter().collect();
        assert_eq!(unique.len(), names.len(), "{line}");
        assert!(!line.starts_with("__"), "{line}");
        assert!(names.iter().all(|name| !name.starts_with("__")), "{line}");
    }
    // A user's `le` on a histogram does not clash with the buckets' own.
    assert!(
        metrics.contains("hostile_latency_count{exported_le=\"mine\"} 1"),
        "{metrics}"
    );
}

#[test]
fn forged_metric_declarations_leave_the_master_bounded_and_metrics_whole() {
    let program = Program::start_fixture("forger", &[("PORT", "0")]);
    let addr = program.listening_addr();
    let management = program.management_addr();
    program.wait_for_workers(1);
    program.wait_for_200(addr, "/forge?batches=0");
    // No app type reads the metrics topic.
    let line = program.wait_for_log("subscribing to the metrics topic: ");
    assert!(line.contains("is reserved"), "{line}");
    let before = rss_bytes(program.pid());
    // 120 declarations, each of 1000 series of 2 KiB, each placing them again.
    let forge = std::thread::spawn(move || http_get_within(addr, "/forge?batches=120", PATIENCE));
    let mut peak = peak_rss(program.pid(), Duration::from_secs(120), || {
        forge.is_finished()
    });
    let forged = forge.join().expect("forge thread").expect("forge answered");
    assert!(forged.body.starts_with("sent=120"), "{forged:?}");
    // What was sent last is read a moment later.
    let settled = Instant::now() + Duration::from_secs(3);
    peak = peak.max(peak_rss(program.pid(), PATIENCE, || {
        Instant::now() > settled
    }));
    // 120 x 1000 series of 2 KiB would be hundreds of MiB; one process's 1000 are 2.
    assert!(
        peak < before + (48 << 20),
        "the master grew from {before} to {peak} bytes under forged batches"
    );
    let metrics = program.wait_for_200(management, "/metrics").body;
    // One process's worth of series (the one channel they came on), none past a bound.
    let forged_series = metrics
        .lines()
        .filter(|line| line.starts_with("forged_"))
        .count();
    // The first declaration's series were taken (past the worker's own few), none of
    // the others: they overlap what is placed already.
    assert!(
        (900..=1000).contains(&forged_series),
        "{forged_series} forged series (one process keeps at most 1000)"
    );
    assert!(!metrics.contains("forged_past_the_end"), "{metrics:.300}");
    assert!(
        !metrics.contains("forged_over_the_header"),
        "{metrics:.300}"
    );
    for line in metrics.lines().filter(|line| !line.starts_with('#')) {
        let name = line.split(['{', ' ']).next().unwrap_or_default();
        assert!(name.len() <= 200, "a name past its bound: {}", &line[..200]);
        assert!(
            line.matches("=\"").count() <= 9,
            "too many labels: {line:.300}"
        );
        assert!(!name.starts_with("forged_wide_histogram"), "{line:.300}");
    }
    assert!(
        metrics
            .lines()
            .filter(|line| line.starts_with("# HELP"))
            .all(|line| line.len() < 1000),
        "a description past its bound"
    );
}

/// The value of the sample line that starts with `prefix` (a name and its labels).
fn sample(metrics: &str, prefix: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(prefix))
        .and_then(|rest| rest.trim().parse::<f64>().ok())
}

#[test]
fn a_worker_that_writes_garbage_over_its_metrics_cannot_hurt_the_master_nor_a_sum() {
    let program = Program::start_fixture("scribbler", &[("PORT", "0")]);
    let addr = program.listening_addr();
    let management = program.management_addr();
    program.wait_for_workers(1);
    for _ in 0..20 {
        let counted = http_get(addr, "/count").expect("count");
        assert_eq!(counted.status, 200, "{counted:?}");
    }
    let counted = |metrics: &str| {
        (
            sample(metrics, "scribbled_total "),
            sample(metrics, "scribbled_seconds_count "),
        )
    };
    let twenty = wait_until(PATIENCE, || {
        let metrics = program.wait_for_200(management, "/metrics").body;
        counted(&metrics) == (Some(20.0), Some(20.0))
    });
    assert!(twenty, "20 counted before the garbage");
    let before = rss_bytes(program.pid());

    // Zeros over every cell: each series reads lower than it did, and is frozen.
    let zeros = http_get(addr, "/scribble?pattern=zero").expect("scribble");
    assert!(zeros.body.starts_with("scribbled "), "{zeros:?}");
    let line = program.wait_for_log("wrote over its metrics");
    assert!(line.contains("WARN"), "{line}");
    let metrics = program.wait_for_200(management, "/metrics").body;
    assert_eq!(
        counted(&metrics),
        (Some(20.0), Some(20.0)),
        "the sums after zeros:\n{metrics}"
    );
    // Then random bytes, and more counting: the master reads on, never lower, never
    // out of the segment, and `/metrics` stays whole.
    let random = http_get(addr, "/scribble?pattern=random").expect("scribble");
    assert!(random.body.starts_with("scribbled "), "{random:?}");
    for _ in 0..10 {
        http_get(addr, "/count").expect("count");
        let metrics = program.wait_for_200(management, "/metrics").body;
        let (total, count) = counted(&metrics);
        assert!(total.is_some_and(|v| v >= 20.0), "{metrics}");
        assert!(count.is_some_and(|v| v >= 20.0), "{metrics}");
        assert!(
            metrics.contains("wix_cluster_metrics_dropped_total"),
            "{metrics}"
        );
    }
    wix_cluster_suite::promtool_finds_nothing(&program.wait_for_200(management, "/metrics").body);
    assert!(
        wix_cluster_suite::is_alive(program.pid()),
        "the master died"
    );
    let after = rss_bytes(program.pid());
    assert!(
        after < before + (16 << 20),
        "the master grew from {before} to {after} bytes"
    );
    // The worker serves on; a kill -9 and its successor do not bring a count lower.
    let worker = program.workers()[0];
    send_signal(worker, Signal::SIGKILL);
    program.wait_until_gone(worker);
    program.wait_for_workers(1);
    program.wait_for_200(addr, "/count");
    let metrics = program.wait_for_200(management, "/metrics").body;
    assert!(
        counted(&metrics).0.is_some_and(|v| v >= 20.0),
        "after the successor: {metrics}"
    );
}
