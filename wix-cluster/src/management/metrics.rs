//! `GET /metrics`: the Prometheus text format (0.0.4), written afresh at each scrape.
//!
//! Per process (label `worker`: the slot of the newest live process of each slot, and
//! `master`): `process_cpu_seconds_total`, `process_resident_memory_bytes`,
//! `process_start_time_seconds`, `process_open_fds` and `process_max_fds` (read from
//! `/proc` at the scrape, off the event loop). Per worker in cluster mode, from its heartbeat:
//! `wix_cluster_worker_requests_total`, `wix_cluster_worker_accept_errors_total`,
//! `wix_cluster_worker_heartbeat_age_seconds`. For the cluster:
//! `wix_cluster_workers_{forked,respawned,exited,died,failing,recycled,stalled,spawn_failed,drains_cut}_total`,
//! `wix_cluster_workers_desired`, `wix_cluster_workers_ready`, `wix_cluster_failing`;
//! with `Autoscale`, `wix_cluster_autoscale_{min,max,desired}` and per worker
//! `wix_cluster_worker_busy_ratio`.
//! Then everything recorded through the `metrics`
//! facade ([`crate::metrics`]): the request metrics of [`crate::http::serve`], the
//! event-loop lag, and the app's and its libraries' own. Names are made valid (other
//! characters become `_`), counters end in `_total`. A facade family whose name is
//! taken (by a built-in family, or by another kind) is left out, with a warning once.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::exposition::{self, Text, Type, metric_name};
use super::health::ready_count;
use super::routes::{Ctx, unix_seconds};
use super::stats::{Tracked, newest_per_slot};
use super::workers;
use crate::metrics::{Buckets, Origin, SeriesKey, View};

/// `GET /metrics`.
pub(crate) async fn page(State(ctx): State<Ctx>) -> Response {
    let tracked = workers::observe(&ctx).await;
    let mut text = Text::default();
    let rows = process_rows(&ctx, &tracked).await;
    processes(&mut text, &rows);
    if !ctx.master.is_single_process() {
        heartbeats(&mut text, &tracked);
    }
    cluster(&mut text, &ctx, &tracked);
    facade(&mut text, &ctx.master.metrics());
    (
        [(header::CONTENT_TYPE, exposition::CONTENT_TYPE)],
        text.finish(),
    )
        .into_response()
}

/// One process, as the `process_*` families show it.
struct ProcessRow {
    worker: String,
    started: f64,
    stat: Option<crate::procfs::ProcStat>,
    open_fds: Option<usize>,
    max_fds: Option<u64>,
}

impl ProcessRow {
    fn read(worker: String, pid: u32, started: std::time::SystemTime) -> ProcessRow {
        ProcessRow {
            worker,
            started: unix_seconds(started),
            stat: crate::procfs::stat(pid).ok(),
            open_fds: crate::procfs::open_fds(pid).ok(),
            max_fds: crate::procfs::max_fds(pid),
        }
    }
}

/// Reads `/proc` for the newest live process of each slot and for the master, on
/// tokio's blocking pool: listing `/proc/<pid>/fd` costs about 15 ms per 10,000
/// descriptors, and the master's event loop (one thread) must not wait for it.
async fn process_rows(ctx: &Ctx, tracked: &[Tracked]) -> Vec<ProcessRow> {
    let mut processes: Vec<(String, u32, std::time::SystemTime)> = newest_per_slot(tracked)
        .into_iter()
        .map(|known| {
            let info = &known.info;
            (info.worker.id.to_string(), info.worker.pid, info.started_at)
        })
        .collect();
    if !ctx.master.is_single_process() {
        processes.push(("master".into(), std::process::id(), ctx.master.started_at()));
    }
    let read = move || {
        processes
            .into_iter()
            .map(|(worker, pid, started)| ProcessRow::read(worker, pid, started))
            .collect()
    };
    match tokio::task::spawn_blocking(read).await {
        Ok(rows) => rows,
        Err(e) => {
            tracing::warn!("reading /proc for /metrics failed: {e}");
            Vec::new()
        }
    }
}

fn processes(text: &mut Text, rows: &[ProcessRow]) {
    type Read = fn(&ProcessRow) -> Option<f64>;
    let families: [(&str, Type, &str, Read); 5] = [
        (
            "process_cpu_seconds_total",
            Type::Counter,
            "CPU time (user and system) the process used, in seconds.",
            |row| row.stat.map(|stat| stat.cpu_time.as_secs_f64()),
        ),
        (
            "process_resident_memory_bytes",
            Type::Gauge,
            "Resident memory of the process, in bytes.",
            |row| row.stat.map(|stat| stat.rss_bytes as f64),
        ),
        (
            "process_start_time_seconds",
            Type::Gauge,
            "When the process started, in seconds since the Unix epoch.",
            |row| Some(row.started),
        ),
        (
            "process_open_fds",
            Type::Gauge,
            "Descriptors the process has open.",
            |row| row.open_fds.map(|n| n as f64),
        ),
        (
            "process_max_fds",
            Type::Gauge,
            "The process's soft limit on open descriptors.",
            |row| row.max_fds.map(|n| n as f64),
        ),
    ];
    for (name, kind, help, read) in families {
        let Some(mut family) = text.family(name, kind, help) else {
            continue;
        };
        for row in rows {
            if let Some(value) = read(row) {
                family.sample("", &[("worker", row.worker.as_str())], value);
            }
        }
    }
}

fn heartbeats(text: &mut Text, tracked: &[Tracked]) {
    type Read = fn(&crate::WorkerInfo) -> f64;
    let families: [(&str, Type, &str, Read); 3] = [
        (
            "wix_cluster_worker_requests_total",
            Type::Counter,
            "Requests the worker served through wix_cluster::http::serve, as of its last \
             heartbeat.",
            |info| info.requests as f64,
        ),
        (
            "wix_cluster_worker_accept_errors_total",
            Type::Counter,
            "Accepts of wix_cluster::http::serve that failed for lack of descriptors or \
             memory, as of the worker's last heartbeat.",
            |info| info.accept_errors as f64,
        ),
        (
            "wix_cluster_worker_heartbeat_age_seconds",
            Type::Gauge,
            "Seconds since the worker's last heartbeat (sent every second).",
            |info| info.since_heartbeat.as_secs_f64(),
        ),
    ];
    let newest = newest_per_slot(tracked);
    if let Some(mut family) = text.family(
        "wix_cluster_worker_open_connections",
        Type::Gauge,
        "Connections the worker's wix_cluster::http::serve has open, by kind (http1, http2, \
         upgraded: WebSockets), as of its last heartbeat.",
    ) {
        for known in &newest {
            let worker = known.info.worker.id.to_string();
            let open = known.info.connections;
            for (kind, count) in [
                ("http1", open.http1),
                ("http2", open.http2),
                ("upgraded", open.upgraded),
            ] {
                family.sample(
                    "",
                    &[("worker", worker.as_str()), ("kind", kind)],
                    f64::from(count),
                );
            }
        }
    }
    for (name, kind, help, read) in families {
        let Some(mut family) = text.family(name, kind, help) else {
            continue;
        };
        for known in &newest {
            let worker = known.info.worker.id.to_string();
            family.sample("", &[("worker", worker.as_str())], read(&known.info));
        }
    }
    if let Some(mut family) = text.family(
        "wix_cluster_worker_busy_ratio",
        Type::Gauge,
        "The share of the last heartbeat's second the worker had a request (until its \
         response head) or a counted job in hand, or its event loop ran late: 0 to 1.",
    ) {
        for known in &newest {
            if let Some(load) = known.info.load {
                let worker = known.info.worker.id.to_string();
                family.sample(
                    "",
                    &[("worker", worker.as_str())],
                    (load.busy + load.lag).min(1.0),
                );
            }
        }
    }
}

fn cluster(text: &mut Text, ctx: &Ctx, tracked: &[Tracked]) {
    let master = &ctx.master;
    let counters = master.counters();
    let no_labels: &[(&str, &str)] = &[];
    for (name, help, value) in [
        ("forked", "Worker processes started.", counters.forked),
        (
            "respawned",
            "Starts of a slot that had a worker before (respawns, replacements, recycles, \
             rolling restarts).",
            counters.respawned,
        ),
        ("exited", "Worker processes that ended.", counters.exited),
        (
            "died",
            "Worker processes that ended without being asked to.",
            counters.died,
        ),
        (
            "failing",
            "Workers that announced they were going down.",
            counters.failing,
        ),
        (
            "recycled",
            "Workers replaced gracefully by a guard.",
            counters.recycled,
        ),
        (
            "stalled",
            "Workers killed for a late heartbeat.",
            counters.stalled,
        ),
        (
            "spawn_failed",
            "Attempts to start a worker process that failed.",
            counters.spawn_failed,
        ),
        (
            "drains_cut",
            "Drains cut short because more than max_draining old workers of a slot drained.",
            counters.drains_cut,
        ),
    ] {
        let name = format!("wix_cluster_workers_{name}_total");
        if let Some(mut family) = text.family(&name, Type::Counter, help) {
            family.sample("", no_labels, value as f64);
        }
    }
    for (name, kind, help, value) in [
        (
            "wix_cluster_workers_desired",
            Type::Gauge,
            "How many workers the cluster keeps running.",
            master.desired_workers() as f64,
        ),
        (
            "wix_cluster_workers_ready",
            Type::Gauge,
            "Worker slots whose newest process is ready.",
            ready_count(tracked) as f64,
        ),
        (
            "wix_cluster_failing",
            Type::Gauge,
            "1 when a plugin reports the cluster failing (cyclic death), else 0.",
            if master.is_failing() { 1.0 } else { 0.0 },
        ),
    ] {
        if let Some(mut family) = text.family(name, kind, help) {
            family.sample("", no_labels, value);
        }
    }
    if let Some((min, max)) = master.autoscale_bounds() {
        for (name, help, value) in [
            (
                "wix_cluster_autoscale_min",
                "The fewest workers the autoscaler keeps.",
                min,
            ),
            (
                "wix_cluster_autoscale_max",
                "The most workers the autoscaler starts.",
                max,
            ),
            (
                "wix_cluster_autoscale_desired",
                "How many workers the autoscaler (or an operator) asks for.",
                master.desired_workers(),
            ),
        ] {
            if let Some(mut family) = text.family(name, Type::Gauge, help) {
                family.sample("", no_labels, value as f64);
            }
        }
    }
}

/// A facade family: its type and series.
enum Series<'a> {
    Counter(Vec<(&'a SeriesKey, u64)>),
    Gauge(Vec<(&'a SeriesKey, Origin, f64)>),
    Histogram(Vec<(&'a SeriesKey, &'a Buckets)>),
}

/// The facade's families, by their name in the page. Counters end in `_total`.
fn families(view: &View) -> BTreeMap<String, (String, Series<'_>)> {
    let mut families: BTreeMap<String, (String, Series<'_>)> = BTreeMap::new();
    for (key, value) in &view.counters {
        let mut name = metric_name(&key.name);
        if !name.ends_with("_total") {
            name.push_str("_total");
        }
        let entry = families
            .entry(name)
            .or_insert_with(|| (key.name.clone(), Series::Counter(Vec::new())));
        note_collision(&entry.0, &key.name);
        if let Series::Counter(series) = &mut entry.1 {
            series.push((key, *value));
        }
    }
    for (key, by_origin) in &view.gauges {
        let entry = families
            .entry(metric_name(&key.name))
            .or_insert_with(|| (key.name.clone(), Series::Gauge(Vec::new())));
        note_collision(&entry.0, &key.name);
        if let Series::Gauge(series) = &mut entry.1 {
            series.extend(
                by_origin
                    .iter()
                    .map(|(origin, value)| (key, *origin, *value)),
            );
        } else {
            warn_once(&key.name, "it is also another kind of metric");
        }
    }
    for (key, buckets) in &view.histograms {
        let entry = families
            .entry(metric_name(&key.name))
            .or_insert_with(|| (key.name.clone(), Series::Histogram(Vec::new())));
        note_collision(&entry.0, &key.name);
        if let Series::Histogram(series) = &mut entry.1 {
            series.push((key, buckets));
        } else {
            warn_once(&key.name, "it is also another kind of metric");
        }
    }
    families
}

fn facade(text: &mut Text, view: &View) {
    for (name, (original, series)) in families(view) {
        let (kind, what) = match &series {
            Series::Counter(_) => (Type::Counter, "summed over the cluster's processes"),
            Series::Gauge(_) => (Type::Gauge, "per worker"),
            Series::Histogram(_) => (Type::Histogram, "merged over the cluster's processes"),
        };
        let help = view
            .descriptions
            .get(&original)
            .cloned()
            .unwrap_or_else(|| format!("{original} ({what})."));
        let Some(mut family) = text.family(&name, kind, &help) else {
            warn_once(&name, "a built-in family has that name");
            continue;
        };
        match series {
            Series::Counter(series) => {
                for (key, value) in series {
                    family.sample("", &key.labels, value as f64);
                }
            }
            Series::Gauge(series) => {
                for (key, origin, value) in series {
                    let mut labels: Vec<(String, String)> = key
                        .labels
                        .iter()
                        .filter(|(name, _)| name != "worker")
                        .cloned()
                        .collect();
                    labels.push(("worker".into(), origin.to_string()));
                    family.sample("", &labels, value);
                }
            }
            Series::Histogram(series) => {
                for (key, buckets) in series {
                    histogram(&mut family, key, buckets);
                }
            }
        }
    }
}

/// A histogram's `_bucket` (cumulative, `le`), `_sum` and `_count` samples.
fn histogram(family: &mut exposition::Family<'_>, key: &SeriesKey, buckets: &Buckets) {
    let mut below = 0u64;
    let bounds = buckets.bounds.iter().map(|b| exposition::number(*b));
    let bounds = bounds.chain(std::iter::once("+Inf".to_owned()));
    for (count, le) in buckets.counts.iter().zip(bounds) {
        below = below.saturating_add(*count);
        let mut labels = key.labels.clone();
        labels.push(("le".into(), le));
        family.sample("_bucket", &labels, below as f64);
    }
    family.sample("_sum", &key.labels, buckets.sum);
    family.sample("_count", &key.labels, buckets.count() as f64);
}

/// Warns about a facade family left out of `/metrics`, once per name (at most
/// [`WARNED_NAMES`] names are remembered).
fn warn_once(family: &str, why: &str) {
    static WARNED: parking_lot::Mutex<Vec<String>> = parking_lot::Mutex::new(Vec::new());
    let mut warned = WARNED.lock();
    if warned.iter().any(|known| known == family) || warned.len() >= WARNED_NAMES {
        return;
    }
    warned.push(family.to_owned());
    tracing::warn!("metric {family} is left out of /metrics: {why}");
}

/// Two facade names that become one family name once made valid (`a-b` and `a_b`):
/// their series are written as one family (a series written twice is left out by the
/// page's writer), which is logged once per pair of names.
fn note_collision(first: &str, other: &str) {
    if first == other {
        return;
    }
    static NOTED: parking_lot::Mutex<Vec<(String, String)>> = parking_lot::Mutex::new(Vec::new());
    let mut noted = NOTED.lock();
    if noted.iter().any(|(a, b)| a == first && b == other) || noted.len() >= WARNED_NAMES {
        return;
    }
    noted.push((first.to_owned(), other.to_owned()));
    tracing::warn!(
        "metrics {first} and {other} have the same name once made valid for Prometheus \
         ({}): /metrics writes their series as one family",
        metric_name(first)
    );
}

/// How many left-out names [`warn_once`] remembers.
const WARNED_NAMES: usize = 100;
