//! Custom metrics: workers count and measure, the master collects (the seed's "instead
//! of each worker publishing stats by itself, collect and publish from master").
//!
//! A worker calls [`counter`] and [`gauge`]; each call travels over the exchange to
//! the master, which keeps the latest value per worker ([`Master::custom_metrics`]) for
//! the `Statsd` plugin and the management app. In single-process mode the one process
//! is worker 0. Best effort: outside a cluster the calls do nothing.
//!
//! [`Master::custom_metrics`]: crate::Master::custom_metrics

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};

use serde::{Deserialize, Serialize};

use crate::WorkerId;
use crate::exchange::{self, Exchange, Peer};

/// One update from a worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Update {
    name: String,
    kind: Kind,
    value: f64,
}

/// How a custom metric adds up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    /// Only grows; each update adds to it.
    Counter,
    /// A level; each update replaces it.
    Gauge,
}

impl Exchange for Update {
    const TOPIC: &'static str = "wix_cluster.metrics";
    type Response = ();
}

/// Adds `by` to the counter `name` of this worker.
pub fn counter(name: &str, by: u64) {
    send(name, Kind::Counter, by as f64);
}

/// Sets the gauge `name` of this worker to `value`.
pub fn gauge(name: &str, value: f64) {
    send(name, Kind::Gauge, value);
}

fn send(name: &str, kind: Kind, value: f64) {
    let update = Update {
        name: name.to_owned(),
        kind,
        value,
    };
    if let Err(e) = exchange::send(&update) {
        tracing::debug!("metric {name} not sent: {e}");
    }
}

/// A custom metric's current value in one worker.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Value {
    /// Counter or gauge.
    pub kind: Kind,
    /// The counter's total, or the gauge's last value.
    pub value: f64,
}

/// Every worker's custom metrics, by worker and name.
pub type CustomMetrics = BTreeMap<WorkerId, BTreeMap<String, Value>>;

/// How many custom metric names the master keeps per worker slot; updates of further
/// names are dropped (counted in [`dropped_updates`], logged once per slot).
pub const MAX_NAMES_PER_WORKER: usize = 1000;
/// The longest custom metric name kept, in bytes; updates with longer names are
/// dropped the same way.
pub const MAX_NAME_LEN: usize = 200;

static DROPPED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Custom metric updates the master dropped since it started: names past
/// [`MAX_NAMES_PER_WORKER`] or longer than [`MAX_NAME_LEN`].
pub fn dropped_updates() -> u64 {
    DROPPED.load(std::sync::atomic::Ordering::Relaxed)
}

/// Forgets slot `worker`'s metrics (its last process ended and none replaced it yet).
pub(crate) fn forget(worker: WorkerId) {
    collected()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&worker);
}

static COLLECTED: OnceLock<Mutex<CustomMetrics>> = OnceLock::new();

fn collected() -> &'static Mutex<CustomMetrics> {
    COLLECTED.get_or_init(Mutex::default)
}

/// Starts collecting what workers send (the master, or the single process, once its
/// exchange hub is installed).
pub(crate) fn start_collector() {
    let mut updates = match exchange::subscribe::<Update>() {
        Ok(updates) => updates,
        Err(e) => {
            tracing::error!("custom metrics will not be collected: {e}");
            return;
        }
    };
    tokio::spawn(async move {
        while let Some((from, update)) = updates.recv().await {
            let worker = match from {
                Peer::Worker(id) => id,
                Peer::Master => WorkerId(0),
            };
            let mut all = collected().lock().unwrap_or_else(|p| p.into_inner());
            let names = all.entry(worker).or_default();
            let known = names.contains_key(&update.name);
            if !known && (names.len() >= MAX_NAMES_PER_WORKER || update.name.len() > MAX_NAME_LEN) {
                let dropped = DROPPED.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                // Logged at the 1st, 2nd, 4th, 8th... drop: a flood costs a few lines.
                if dropped.is_power_of_two() {
                    tracing::warn!(
                        "worker {worker} reports more than {MAX_NAMES_PER_WORKER} custom metric \
                         names (or one longer than {MAX_NAME_LEN} bytes); dropping the new ones \
                         ({dropped} updates dropped so far)"
                    );
                }
                continue;
            }
            let entry = names.entry(update.name).or_insert(Value {
                kind: update.kind,
                value: 0.0,
            });
            entry.kind = update.kind;
            match update.kind {
                Kind::Counter => entry.value += update.value,
                Kind::Gauge => entry.value = update.value,
            }
        }
    });
}

/// A copy of what was collected so far.
pub(crate) fn snapshot() -> CustomMetrics {
    collected()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
}
