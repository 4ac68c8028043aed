//! `GET /metrics`: Prometheus text format 0.0.4, written by the `prometheus` crate from
//! a registry filled afresh at each scrape.
//!
//! Per worker slot (label `worker`, the newest live process of the slot):
//! `process_cpu_seconds_total`, `process_resident_memory_bytes` and
//! `process_start_time_seconds` (read from `/proc` at the scrape), and in cluster mode
//! `wix_cluster_worker_requests_total` and `wix_cluster_worker_heartbeat_age_seconds`;
//! custom worker metrics (`wix_cluster::metrics`) under their own sanitized names,
//! counters with `_total` appended (unless already there), gauges as they are, labelled
//! by slot. For the cluster:
//! `wix_cluster_workers_{forked,respawned,exited,died,failing,recycled,stalled,spawn_failed}_total`,
//! `wix_cluster_workers_desired`, `wix_cluster_workers_ready`, `wix_cluster_failing`.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use prometheus::core::Collector;
use prometheus::{CounterVec, Encoder, Gauge, GaugeVec, IntCounter, Opts, Registry, TextEncoder};

use super::health::ready_count;
use super::routes::{Ctx, error, unix_seconds};
use super::stats::Tracked;
use super::workers;
use crate::metrics::Kind;

/// `GET /metrics`.
pub(crate) async fn page(State(ctx): State<Ctx>) -> Response {
    let tracked = workers::observe(&ctx).await;
    let registry = Registry::new();
    if let Err(e) = fill(&registry, &ctx, &tracked) {
        tracing::error!("cannot build the metrics: {e}");
        return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
    }
    let encoder = TextEncoder::new();
    let mut text = Vec::new();
    if let Err(e) = encoder.encode(&registry.gather(), &mut text) {
        tracing::error!("cannot encode the metrics: {e}");
        return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
    }
    (
        [(header::CONTENT_TYPE, encoder.format_type().to_owned())],
        text,
    )
        .into_response()
}

/// Registers `collector` and returns it.
fn add<C: Collector + Clone + 'static>(registry: &Registry, collector: C) -> prometheus::Result<C> {
    registry.register(Box::new(collector.clone()))?;
    Ok(collector)
}

fn fill(registry: &Registry, ctx: &Ctx, tracked: &[Tracked]) -> prometheus::Result<()> {
    let master = &ctx.master;
    let single = master.is_single_process();
    let by_worker = &["worker"];

    let cpu = add(
        registry,
        CounterVec::new(
            Opts::new(
                "process_cpu_seconds_total",
                "CPU time (user and system) the worker process used, in seconds.",
            ),
            by_worker,
        )?,
    )?;
    let rss = add(
        registry,
        GaugeVec::new(
            Opts::new(
                "process_resident_memory_bytes",
                "Resident memory of the worker process, in bytes.",
            ),
            by_worker,
        )?,
    )?;
    let start = add(
        registry,
        GaugeVec::new(
            Opts::new(
                "process_start_time_seconds",
                "When the worker process started, in seconds since the Unix epoch.",
            ),
            by_worker,
        )?,
    )?;
    let requests = add(
        registry,
        CounterVec::new(
            Opts::new(
                "wix_cluster_worker_requests_total",
                "Requests the worker served through wix_cluster::http::serve, as of its last \
                 heartbeat.",
            ),
            by_worker,
        )?,
    )?;
    let accept_errors = add(
        registry,
        CounterVec::new(
            Opts::new(
                "wix_cluster_worker_accept_errors_total",
                "Accepts of wix_cluster::http::serve that failed for lack of descriptors or \
                 memory, as of the worker's last heartbeat.",
            ),
            by_worker,
        )?,
    )?;
    let heartbeat = add(
        registry,
        GaugeVec::new(
            Opts::new(
                "wix_cluster_worker_heartbeat_age_seconds",
                "Seconds since the worker's last heartbeat (sent every second).",
            ),
            by_worker,
        )?,
    )?;

    // Custom metrics are registered after every built-in family, so that a user's
    // name can never take a built-in one's place (it is left out instead).
    let mut custom_values: Vec<(String, Kind, String, f64)> = Vec::new();
    for known in newest_per_slot(tracked) {
        let info = &known.info;
        let worker = info.worker.id.get().to_string();
        let labels = [worker.as_str()];
        if let Ok(stat) = crate::procfs::stat(info.worker.pid) {
            cpu.with_label_values(&labels)
                .inc_by(stat.cpu_time.as_secs_f64());
            rss.with_label_values(&labels).set(stat.rss_bytes as f64);
        }
        start
            .with_label_values(&labels)
            .set(unix_seconds(info.started_at));
        if !single {
            requests
                .with_label_values(&labels)
                .inc_by(info.requests as f64);
            accept_errors
                .with_label_values(&labels)
                .inc_by(info.accept_errors as f64);
            heartbeat
                .with_label_values(&labels)
                .set(info.since_heartbeat.as_secs_f64());
        }
        for (name, metric) in &known.custom {
            let family = match metric.kind {
                Kind::Counter => {
                    let name = sanitize(name);
                    if name.ends_with("_total") {
                        name
                    } else {
                        format!("{name}_total")
                    }
                }
                Kind::Gauge => sanitize(name),
            };
            custom_values.push((family, metric.kind, worker.clone(), metric.value));
        }
    }

    let counters = master.counters();
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
    ] {
        let counter = add(
            registry,
            IntCounter::new(format!("wix_cluster_workers_{name}_total"), help)?,
        )?;
        counter.inc_by(value);
    }
    let desired = add(
        registry,
        Gauge::new(
            "wix_cluster_workers_desired",
            "How many workers the cluster keeps running.",
        )?,
    )?;
    desired.set(master.desired_workers() as f64);
    let ready = add(
        registry,
        Gauge::new(
            "wix_cluster_workers_ready",
            "Worker slots whose newest process is ready.",
        )?,
    )?;
    ready.set(ready_count(tracked) as f64);
    let failing = add(
        registry,
        Gauge::new(
            "wix_cluster_failing",
            "1 when a plugin reports the cluster failing (cyclic death), else 0.",
        )?,
    )?;
    failing.set(if master.is_failing() { 1.0 } else { 0.0 });
    fill_custom(registry, custom_values);
    Ok(())
}

/// Registers the custom metrics `(family, kind, worker, value)`. A family that cannot
/// be registered (its name is a built-in family's, or another kind's) is left out, with
/// a warning the first time.
fn fill_custom(registry: &Registry, values: Vec<(String, Kind, String, f64)>) {
    let mut custom: BTreeMap<String, Custom> = BTreeMap::new();
    for (family, kind, worker, value) in values {
        if !custom.contains_key(&family) {
            match Custom::register(registry, &family, kind) {
                Ok(collector) => {
                    custom.insert(family.clone(), collector);
                }
                Err(e) => {
                    warn_once(&family, &e);
                    continue;
                }
            }
        }
        let labels = [worker.as_str()];
        // A name used with two kinds (by different workers): the first kind wins.
        match (custom.get(&family), kind) {
            (Some(Custom::Counter(counter)), Kind::Counter) => {
                counter.with_label_values(&labels).inc_by(value.max(0.0));
            }
            (Some(Custom::Gauge(gauge)), Kind::Gauge) => {
                gauge.with_label_values(&labels).set(value);
            }
            _ => {}
        }
    }
}

/// Warns about a custom family left out of `/metrics`, once per name (at most
/// [`WARNED_NAMES`] names are remembered).
fn warn_once(family: &str, error: &prometheus::Error) {
    static WARNED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let mut warned = WARNED.lock().unwrap_or_else(|p| p.into_inner());
    if warned.iter().any(|known| known == family) || warned.len() >= WARNED_NAMES {
        return;
    }
    warned.push(family.to_owned());
    tracing::warn!("custom metric {family} is left out of /metrics: {error}");
}

/// How many left-out names [`warn_once`] remembers.
const WARNED_NAMES: usize = 100;

/// A custom metric's family in the registry.
enum Custom {
    Counter(CounterVec),
    Gauge(GaugeVec),
}

impl Custom {
    fn register(registry: &Registry, family: &str, kind: Kind) -> prometheus::Result<Custom> {
        let help = format!("Custom worker metric {family} (wix_cluster::metrics).");
        let opts = Opts::new(family, help);
        Ok(match kind {
            Kind::Counter => Custom::Counter(add(registry, CounterVec::new(opts, &["worker"])?)?),
            Kind::Gauge => Custom::Gauge(add(registry, GaugeVec::new(opts, &["worker"])?)?),
        })
    }
}

/// The newest live process of each slot: one series per worker, even mid rolling
/// restart when a slot briefly has two processes.
fn newest_per_slot(tracked: &[Tracked]) -> Vec<&Tracked> {
    let mut newest: BTreeMap<u32, &Tracked> = BTreeMap::new();
    for known in tracked.iter().filter(|known| known.exited_at.is_none()) {
        let id = known.info.worker.id.get();
        if newest
            .get(&id)
            .is_none_or(|seen| seen.info.worker.generation < known.info.worker.generation)
        {
            newest.insert(id, known);
        }
    }
    newest.into_values().collect()
}

/// A valid Prometheus metric name: `[a-zA-Z_:][a-zA-Z0-9_:]*`, other characters as `_`.
fn sanitize(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custom_names_become_valid_metric_names() {
        assert_eq!(sanitize("queue_depth"), "queue_depth");
        assert_eq!(sanitize("req/s.p99"), "req_s_p99");
        assert_eq!(sanitize("5xx"), "_5xx");
        assert_eq!(sanitize(""), "_");
    }
}
