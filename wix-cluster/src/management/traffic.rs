//! Traffic over time for the dashboard: every second, the requests per second and the
//! latency p50 and p99 of the last second, per worker and for the cluster, from the
//! request metrics of `http::serve` (`http_server_request_duration_seconds`); the last
//! [`KEPT`] seconds are kept. And `GET /traffic`: those samples, plus a table of every
//! metric recorded through the `metrics` facade.

use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant, SystemTime};

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use serde_json::{Value, json};

use super::routes::{Ctx, number, unix_seconds};
use crate::metrics::requests::REQUEST_DURATION;
use crate::metrics::{Buckets, Origin, ProcessKey};

/// How many one-second samples are kept.
const KEPT: usize = 300;
/// How often a sample is taken.
const EVERY: Duration = Duration::from_secs(1);
/// The most rows of the metrics table.
const TABLE_ROWS: usize = 500;

/// Requests per second and latency over one sample's window.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub(crate) struct Rate {
    rps: f64,
    /// Seconds; `null` without requests.
    p50: Option<f64>,
    p99: Option<f64>,
}

impl Rate {
    fn of(window: &Buckets, seconds: f64) -> Rate {
        Rate {
            rps: window.count() as f64 / seconds,
            p50: window.quantile(0.5),
            p99: window.quantile(0.99),
        }
    }
}

/// One sample.
#[derive(Debug, Clone, Serialize)]
struct Sample {
    /// Milliseconds since the Unix epoch.
    t: u64,
    total: Rate,
    /// By worker slot.
    workers: BTreeMap<String, Rate>,
    /// The worker count: desired, and ready processes.
    count: Count,
}

/// How many workers there were at a sample.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub(crate) struct Count {
    desired: usize,
    ready: usize,
}

/// The sampler's state.
#[derive(Default)]
pub(crate) struct Traffic {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Each process's histogram at the last sample.
    last: HashMap<ProcessKey, Buckets>,
    last_at: Option<Instant>,
    samples: VecDeque<Sample>,
}

impl Traffic {
    /// Takes a sample from each process's histogram now, with the worker count.
    fn sample(&self, now: Vec<(ProcessKey, Buckets)>, count: Count) {
        let mut inner = self.inner.lock();
        let at = Instant::now();
        let seconds = inner
            .last_at
            .map_or(EVERY.as_secs_f64(), |last| {
                at.duration_since(last).as_secs_f64()
            })
            .max(0.001);
        let mut by_worker: BTreeMap<String, Buckets> = BTreeMap::new();
        let mut total: Option<Buckets> = None;
        for (key, buckets) in &now {
            let window = match inner.last.get(key) {
                Some(before) => buckets.since(before),
                // A process seen for the first time: all it served is recent.
                None => Some(buckets.clone()),
            };
            let Some(window) = window else { continue };
            let Origin::Worker(id) = key.0 else { continue };
            add(
                by_worker
                    .entry(id.to_string())
                    .or_insert_with(|| empty_like(&window)),
                &window,
            );
            match &mut total {
                Some(total) => add(total, &window),
                None => total = Some(window),
            }
        }
        inner.last = now.into_iter().collect();
        inner.last_at = Some(at);
        let sample = Sample {
            t: (unix_seconds(SystemTime::now()) * 1000.0) as u64,
            total: total.map_or(
                Rate {
                    rps: 0.0,
                    p50: None,
                    p99: None,
                },
                |total| Rate::of(&total, seconds),
            ),
            workers: by_worker
                .iter()
                .map(|(id, window)| (id.clone(), Rate::of(window, seconds)))
                .collect(),
            count,
        };
        inner.samples.push_back(sample);
        while inner.samples.len() > KEPT {
            inner.samples.pop_front();
        }
    }
}

fn empty_like(buckets: &Buckets) -> Buckets {
    Buckets::empty(&buckets.bounds)
}

/// Adds `window` to `sum` (dropped when the bounds differ: a mixed-build upgrade).
fn add(sum: &mut Buckets, window: &Buckets) {
    let _ = sum.merge(window);
}

/// Samples every second, for the life of the process.
pub(crate) async fn sample_forever(ctx: Ctx) {
    let mut ticks = tokio::time::interval(EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        // `live`: the one process in single-process mode.
        let ready = super::workers::live(&ctx)
            .await
            .iter()
            .filter(|worker| worker.state == crate::WorkerState::Ready)
            .count();
        let count = Count {
            desired: ctx.master.desired_workers(),
            ready,
        };
        ctx.traffic
            .sample(crate::metrics::per_process(REQUEST_DURATION), count);
    }
}

/// `GET /traffic`: `{interval_ms, samples: [{t, total: {rps, p50, p99}, workers:
/// {"1": {...}}, count: {desired, ready}}], metrics: [{name, kind, labels, worker?, value?, count?, p50?, p99?}]}`,
/// samples oldest first. A gauge's value or a histogram's sum that is not finite is
/// `"NaN"`, `"+Inf"` or `"-Inf"`.
pub(crate) async fn page(State(ctx): State<Ctx>) -> Json<Value> {
    let samples: Vec<Sample> = ctx.traffic.inner.lock().samples.iter().cloned().collect();
    let view = ctx.master.metrics();
    let mut table = Vec::new();
    for (key, value) in &view.counters {
        table.push(
            json!({"name": key.name, "kind": "counter", "labels": labels(key), "value": value}),
        );
    }
    for (key, by_origin) in &view.gauges {
        for (origin, value) in by_origin {
            table.push(json!({
                "name": key.name, "kind": "gauge", "labels": labels(key),
                "worker": origin.to_string(), "value": number(*value),
            }));
        }
    }
    for (key, buckets) in &view.histograms {
        table.push(json!({
            "name": key.name, "kind": "histogram", "labels": labels(key),
            "count": buckets.count(), "sum": number(buckets.sum),
            "p50": buckets.quantile(0.5).map(number), "p99": buckets.quantile(0.99).map(number),
        }));
    }
    table.truncate(TABLE_ROWS);
    Json(json!({
        "interval_ms": EVERY.as_millis() as u64,
        "samples": samples,
        "metrics": table,
    }))
}

fn labels(key: &crate::metrics::SeriesKey) -> BTreeMap<&str, &str> {
    key.labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}
