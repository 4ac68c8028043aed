//! Cluster-wide metrics through the [`metrics`](https://docs.rs/metrics) facade, the
//! crate Rust libraries instrument with.
//!
//! Every process of a cluster installs a recorder (`recorder.rs`): `counter!`,
//! `gauge!` and `histogram!` calls, with labels, from the app and from any library it
//! uses, update atomics in the process. Every [`FLUSH_INTERVAL`] a worker sends the
//! series that changed, in one exchange message (every 10 s, and after a batch the
//! channel refused, all of them: values are totals, so a lost batch is made good), to
//! the master, which keeps the cluster's
//! view (`aggregate.rs`) for `/metrics`, the dashboard and the `Statsd` plugin:
//!
//! - **counters** are summed over every process that reported them; a process that
//!   ended keeps its last total in the sum, so a counter never goes backwards when a
//!   worker dies or is replaced, and a master upgrade hands the totals over;
//! - **histograms** are merged bucket by bucket the same way (buckets: [`DEFAULT_BUCKETS`]
//!   unless `ClusterBuilder::histogram_buckets` says otherwise); readings with bounds
//!   other than those first seen for the series (a build with other buckets) are
//!   summed apart, under the label [`LAYOUT_LABEL`];
//! - **gauges** are per worker (label `worker`, the newest live process of each slot;
//!   the master's own as `worker="master"`): a sum over workers is `sum without(worker)`
//!   in PromQL, meaningful for levels such as in-flight requests, not for others.
//!
//! In single-process mode the one process's recorder feeds the same view, as worker 0.
//! The master's own recorder (plugins may count too) feeds it as `master`.
//!
//! Bounded: at most [`MAX_SERIES_PER_PROCESS`] series per process, names of at most
//! [`MAX_NAME_LEN`] bytes, [`MAX_LABELS`] labels of at most [`MAX_LABEL_LEN`] bytes,
//! histograms of at most [`MAX_BUCKETS`] bounds; past them updates are dropped and
//! counted ([`dropped_updates`] in each process, [`DROPPED_TOTAL`] for the cluster).
//! The master checks every bound again on what it receives, and takes a batch's
//! process from the channel it arrived on, never from the batch.
//!
//! ```no_run
//! #[wix_cluster::main(workers = 2)]
//! async fn main(worker: wix_cluster::Worker) -> std::io::Result<()> {
//!     metrics::counter!("jobs_done_total", "kind" => "resize").increment(1);
//!     metrics::histogram!("job_duration_seconds").record(0.25);
//!     metrics::gauge!("queue_depth").set(3.0);
//!     # let _ = worker;
//!     Ok(())
//! }
//! ```

mod aggregate;
mod recorder;
pub mod requests;
mod series;

use parking_lot::{Mutex, MutexGuard};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

pub use aggregate::{LAYOUT_LABEL, MAX_RETIRED_SERIES, Origin, View};
pub(crate) use aggregate::{ProcessKey, Total};
pub use series::{Buckets, Reading, SeriesKey};

use crate::WorkerId;
use crate::exchange;
use aggregate::Aggregate;
use recorder::{Recorder, Registry};
use series::Batch;

/// The most series (a name with one set of labels) one process reports.
pub const MAX_SERIES_PER_PROCESS: usize = 1000;
/// The longest metric name kept, in bytes.
pub const MAX_NAME_LEN: usize = 200;
/// The most labels a series may have.
pub const MAX_LABELS: usize = 8;
/// The longest label name or value kept, in bytes.
pub const MAX_LABEL_LEN: usize = 128;
/// The most bucket bounds a histogram may have.
pub const MAX_BUCKETS: usize = 64;
/// The longest description (`# HELP` text) kept, in characters.
pub const MAX_HELP_LEN: usize = 500;
/// How often a worker sends what changed.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(250);
/// Histogram bucket bounds unless configured: OpenTelemetry's defaults for HTTP server
/// request duration, in seconds.
pub const DEFAULT_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// The histogram of each worker's event-loop lag: how late its heartbeat tick ran, in
/// seconds, once a second.
pub const EVENT_LOOP_LAG: &str = "wix_cluster_event_loop_lag_seconds";

static REQUESTS_ON: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// Whether [`crate::http::serve`] records request metrics in this process.
pub(crate) fn requests_on() -> bool {
    REQUESTS_ON.load(Ordering::Relaxed)
}

/// The metrics settings of a program.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Settings {
    /// Histogram bucket bounds, increasing.
    pub(crate) buckets: Vec<f64>,
    /// Whether [`crate::http::serve`] records request metrics.
    pub(crate) requests: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            buckets: DEFAULT_BUCKETS.to_vec(),
            requests: true,
        }
    }
}

/// Adds `by` to the counter `name`: a shim over the facade's
/// `metrics::counter!(name).increment(by)`.
pub fn counter(name: &str, by: u64) {
    ::metrics::counter!(name.to_owned()).increment(by);
}

/// Sets the gauge `name` to `value`: a shim over the facade's
/// `metrics::gauge!(name).set(value)`.
pub fn gauge(name: &str, value: f64) {
    ::metrics::gauge!(name.to_owned()).set(value);
}

/// The counter of updates dropped by every process, summed like any counter.
pub const DROPPED_TOTAL: &str = "wix_cluster_metrics_dropped_total";

static DROPPED: AtomicU64 = AtomicU64::new(0);

/// Updates dropped by this process since it started: series past
/// [`MAX_SERIES_PER_PROCESS`] or breaking a length bound (in a worker, its own; in the
/// master, those of the readings it received).
pub fn dropped_updates() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// Counts a dropped update, logging at the 1st, 2nd, 4th, 8th... drop.
pub(crate) fn count_dropped() {
    let dropped = DROPPED.fetch_add(1, Ordering::Relaxed) + 1;
    if dropped.is_power_of_two() {
        tracing::warn!(
            "a metric was dropped: more than {MAX_SERIES_PER_PROCESS} series in a process, or \
             a name or label past its length bound ({dropped} dropped so far)"
        );
    }
}

static REGISTRY: OnceLock<Arc<Registry>> = OnceLock::new();

/// Installs this process's recorder as the facade's global one.
fn install(settings: &Settings) -> Option<&'static Arc<Registry>> {
    let registry = REGISTRY.get_or_init(|| Arc::new(Registry::new(settings.buckets.clone())));
    if ::metrics::set_global_recorder(Recorder(registry.clone())).is_err() {
        tracing::warn!("another metrics recorder is installed: metrics will not reach the master");
        return None;
    }
    Some(registry)
}

static AGGREGATE: OnceLock<Mutex<Aggregate>> = OnceLock::new();

fn aggregate() -> MutexGuard<'static, Aggregate> {
    AGGREGATE.get_or_init(Mutex::default).lock()
}

/// A worker: installs the recorder and sends what changed every [`FLUSH_INTERVAL`].
pub(crate) fn start_worker(settings: &Settings, generation: u32) {
    REQUESTS_ON.store(settings.requests, Ordering::Relaxed);
    let Some(registry) = install(settings) else {
        return;
    };
    let registry = registry.clone();
    every_flush(move || send(&registry, generation));
}

/// Runs `flush` every [`FLUSH_INTERVAL`], for the life of the process.
fn every_flush(flush: impl Fn() + Send + 'static) {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(FLUSH_INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            flush();
        }
    });
}

/// Sends a worker's last changes (as it exits).
pub(crate) fn flush_worker(generation: u32) {
    if let Some(registry) = REGISTRY.get() {
        send(registry, generation);
    }
}

fn send(registry: &Registry, generation: u32) {
    // Set when a batch could not be sent (the channel's backlog is full): its changes
    // are lost, so the next batch carries every series. Every [`REFRESH_EVERY`] batches
    // do anyway.
    static RESEND_ALL: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    static SENT: AtomicU64 = AtomicU64::new(0);
    let refresh = SENT.fetch_add(1, Ordering::Relaxed) % REFRESH_EVERY == 0;
    let all = RESEND_ALL.swap(false, Ordering::Relaxed) || refresh;
    if let Some(batch) = changes(registry, generation, all) {
        if let Err(e) = exchange::send_internal(&batch) {
            RESEND_ALL.store(true, Ordering::Relaxed);
            tracing::debug!("metrics not sent: {e}");
        }
    }
}

/// Every how many batches a worker sends all its series, changed or not.
const REFRESH_EVERY: u64 = 40;

/// What changed since the last call, as a batch; `None` when nothing did. This
/// process's count of dropped updates travels as the counter [`DROPPED_TOTAL`].
fn changes(registry: &Registry, generation: u32, all: bool) -> Option<Batch> {
    // Nothing sent yet: the first batch carries the count, 0 included, so that
    // `wix_cluster_metrics_dropped_total` is there from the start.
    static SENT_DROPPED: AtomicU64 = AtomicU64::new(u64::MAX);
    let (mut series, descriptions) = if all {
        registry.take_all()
    } else {
        registry.take_changes()
    };
    let dropped = dropped_updates();
    if SENT_DROPPED.swap(dropped, Ordering::Relaxed) != dropped {
        series.push((
            SeriesKey::new(DROPPED_TOTAL, Vec::new()),
            Reading::Counter(dropped),
        ));
    }
    if series.is_empty() && descriptions.is_empty() {
        return None;
    }
    Some(Batch {
        generation,
        series,
        descriptions,
    })
}

/// The master, or the single process (as `origin`), once its exchange hub is
/// installed: collects what workers send, and installs its own recorder, read into the
/// same view every [`FLUSH_INTERVAL`].
pub(crate) fn start_collector(settings: &Settings, origin: Origin) {
    let _ = OWN_ORIGIN.set(origin);
    REQUESTS_ON.store(settings.requests, Ordering::Relaxed);
    if let Some(registry) = install(settings) {
        let registry = registry.clone();
        every_flush(move || collect_own(&registry, origin));
    }
    if origin != Origin::Master {
        return;
    }
    // Written from the start, at 0.
    ::metrics::counter!(exchange::hub::REFUSED_TOTAL).increment(0);
    let hub = match exchange::hub::hub() {
        Ok(hub) => hub,
        Err(e) => {
            tracing::error!("worker metrics will not be collected: {e}");
            return;
        }
    };
    // Batches come straight from each worker's channel, which names the process: what
    // a batch says about itself is not trusted.
    hub.intercept(
        <Batch as exchange::Exchange>::TOPIC,
        Arc::new(
            |key, payload| match postcard::from_bytes::<Batch>(payload) {
                Ok(batch) => aggregate().ingest(Origin::Worker(key.id), key.generation, batch),
                Err(e) => {
                    if let Ok(hub) = exchange::hub::hub() {
                        hub.count_undecodable(
                            <Batch as exchange::Exchange>::TOPIC,
                            "a metrics batch",
                            &e,
                        );
                    }
                }
            },
        ),
    );
}

fn collect_own(registry: &Registry, origin: Origin) {
    if let Some(batch) = changes(registry, 0, false) {
        aggregate().ingest(origin, 0, batch);
    }
}

/// The process of slot `worker`, generation `generation`, ended.
pub(crate) fn ended(worker: WorkerId, generation: u32) {
    aggregate().ended(Origin::Worker(worker), generation);
}

/// The cluster's metrics now (the master's and the single process's view; empty
/// elsewhere).
pub(crate) fn view() -> View {
    if let Some(registry) = REGISTRY.get() {
        // The own recorder's latest, so that a scrape sees the master's as of now.
        if AGGREGATE.get().is_some() {
            let origin = own_origin();
            collect_own(registry, origin);
        }
    }
    aggregate().view()
}

static OWN_ORIGIN: OnceLock<Origin> = OnceLock::new();

/// Which origin this process's own readings have in the view.
fn own_origin() -> Origin {
    OWN_ORIGIN.get().copied().unwrap_or(Origin::Master)
}

/// The histogram `name` per process, label sets merged.
pub(crate) fn per_process(name: &str) -> Vec<(ProcessKey, Buckets)> {
    aggregate().per_process(name)
}

/// The totals to hand to a new master.
pub(crate) fn totals() -> Vec<(SeriesKey, Total)> {
    aggregate().totals()
}

/// The old master's latest totals (an upgrade): they replace the ones it sent before.
pub(crate) fn set_predecessor(totals: Vec<(SeriesKey, Total)>) {
    aggregate().set_predecessor(totals);
}
