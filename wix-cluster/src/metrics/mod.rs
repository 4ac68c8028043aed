//! Cluster-wide metrics through the [`metrics`](https://docs.rs/metrics) facade, the
//! crate Rust libraries instrument with.
//!
//! Every process of a cluster installs a recorder (`recorder.rs`): `counter!`,
//! `gauge!` and `histogram!` calls, with labels, from the app and from any library it
//! uses, update atomic cells in a shared memory segment the master made for the
//! process and passed to it at spawn (a sealed `memfd`, `layout.rs`). Only where a new
//! series lies (its name, labels, kind and buckets) crosses the channel to the master,
//! once; the master reads the values straight from the segment whenever it is asked
//! (`aggregate.rs`), so a scrape is current, the worker does no periodic work for its
//! metrics, and nothing a worker counted is lost when it is killed (the master still
//! has the mapping). The master's view serves `/metrics`, the dashboard and the
//! `Statsd` plugin:
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
//! The master checks every bound again on what it receives, takes a declaration's
//! process from the channel it arrived on, never from the message, places series only
//! inside the process's segment, and freezes (with a warning) a series whose counter or
//! bucket reads lower than before: a worker that writes garbage over its own cells
//! cannot make a sum go backwards nor the master read out of bounds.
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
mod layout;
mod recorder;
pub mod requests;
mod series;

use parking_lot::{Mutex, MutexGuard};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

pub use aggregate::{LAYOUT_LABEL, MAX_RETIRED_SERIES, Origin, View};
pub(crate) use aggregate::{ProcessKey, Total};
pub use series::{Buckets, Reading, SeriesKey};

use crate::WorkerId;
use crate::exchange;
use crate::shm::Segment;
use aggregate::Aggregate;
use layout::{DROPPED_CELL, MAGIC, SEGMENT_CELLS};
use recorder::{Recorder, Registry};
use series::Declarations;

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
/// How long a worker waits before it tries again to declare new series the channel
/// refused (its backlog was full).
const DECLARE_RETRY: Duration = Duration::from_millis(250);
/// Histogram bucket bounds unless configured: OpenTelemetry's defaults for HTTP server
/// request duration, in seconds.
pub const DEFAULT_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// The histogram of each worker's event-loop lag: how late its heartbeat tick ran, in
/// seconds, once a second.
pub const EVENT_LOOP_LAG: &str = "wix_cluster_event_loop_lag_seconds";
/// The counter of HTTP/1 keep-alive connections a worker closed (after a response saying
/// `connection: close`) because it held more than its fair share of the cluster's
/// connections: shedding, see fair accepting in `docs/operating.md`.
pub const CONNECTIONS_SHED: &str = "wix_cluster_connections_shed_total";

/// The gauge an app that does not serve HTTP (a queue consumer, a batch worker) sets to
/// the number of jobs it has in hand, for [`crate::plugins::Autoscale`]:
/// `metrics::gauge!(wix_cluster::metrics::APP_BUSY).increment(1.0)` when a job starts,
/// `.decrement(1.0)` when it ends. Its level in whole jobs counts as work in hand, the
/// same as requests in flight; it is also exported like any gauge.
pub const APP_BUSY: &str = "wix_cluster_app_busy";

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
    if let Some(cell) = REGISTRY
        .get()
        .and_then(|registry| registry.segment().cells().get(DROPPED_CELL))
    {
        cell.store(dropped, Ordering::Relaxed);
    }
    if dropped.is_power_of_two() {
        tracing::warn!(
            "a metric was dropped: more than {MAX_SERIES_PER_PROCESS} series in a process, or \
             a name or label past its length bound ({dropped} dropped so far)"
        );
    }
}

static REGISTRY: OnceLock<Arc<Registry>> = OnceLock::new();

/// Installs this process's recorder, over `segment`, as the facade's global one.
fn install(settings: &Settings, segment: Segment) -> Option<&'static Arc<Registry>> {
    let segment = Arc::new(segment);
    let registry =
        REGISTRY.get_or_init(|| Arc::new(Registry::new(settings.buckets.clone(), segment)));
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

/// A new segment for the worker `worker` of `generation`, read by this master from
/// now on; and its descriptor, for the worker to inherit. `ended` must follow, even
/// when the worker could not be started.
pub(crate) fn segment_for(worker: WorkerId, generation: u32) -> std::io::Result<OwnedFd> {
    let (segment, fd) = Segment::create("wix-cluster-metrics", SEGMENT_CELLS, MAGIC)?;
    aggregate().attach(Origin::Worker(worker), generation, Arc::new(segment));
    Ok(fd)
}

/// A worker: installs the recorder over the segment the master passed (`fd`), and
/// declares each new series to the master as it is registered.
pub(crate) fn start_worker(settings: &Settings, fd: OwnedFd) {
    REQUESTS_ON.store(settings.requests, Ordering::Relaxed);
    let segment = match Segment::open(fd, SEGMENT_CELLS, MAGIC) {
        Ok(segment) => segment,
        Err(e) => {
            tracing::error!(
                "cannot map the master's metrics segment ({e}): metrics will not reach the master"
            );
            return;
        }
    };
    let Some(registry) = install(settings, segment) else {
        return;
    };
    let registry = registry.clone();
    tokio::spawn(async move {
        loop {
            registry.declared.notified().await;
            while !declare(&registry) {
                tokio::time::sleep(DECLARE_RETRY).await;
            }
        }
    });
}

/// Sends the master what `registry` has to declare; `false` when the channel refused
/// it (kept for the next try).
fn declare(registry: &Registry) -> bool {
    let declarations = registry.take_declarations();
    if declarations.is_empty() {
        return true;
    }
    match exchange::send_internal(&declarations) {
        Ok(()) => true,
        Err(e) => {
            tracing::debug!("new metrics not declared yet: {e}");
            registry.put_back(declarations);
            false
        }
    }
}

/// Declares what is left (as a worker exits).
pub(crate) fn flush_worker() {
    if let Some(registry) = REGISTRY.get() {
        declare(registry);
    }
}

/// The master, or the single process (as `origin`), once its exchange hub is
/// installed: installs its own recorder, read into the same view, and (the master)
/// takes the workers' declarations.
pub(crate) fn start_collector(settings: &Settings, origin: Origin) {
    let _ = OWN_ORIGIN.set(origin);
    REQUESTS_ON.store(settings.requests, Ordering::Relaxed);
    match Segment::local(SEGMENT_CELLS) {
        Ok(segment) => {
            if let Some(registry) = install(settings, segment) {
                aggregate().attach(origin, 0, registry.segment().clone());
            }
        }
        Err(e) => tracing::error!("cannot make this process's metrics segment: {e}"),
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
    // Declarations come straight from each worker's channel, which names the process:
    // what a message says about itself is not trusted.
    hub.intercept(
        <Declarations as exchange::Exchange>::TOPIC,
        Arc::new(
            |key, payload| match postcard::from_bytes::<Declarations>(payload) {
                Ok(declared) => {
                    aggregate().declare(Origin::Worker(key.id), key.generation, declared)
                }
                Err(e) => {
                    if let Ok(hub) = exchange::hub::hub() {
                        hub.count_undecodable(
                            <Declarations as exchange::Exchange>::TOPIC,
                            "a metrics declaration",
                            &e,
                        );
                    }
                }
            },
        ),
    );
}

/// This process's own new series, into the view.
fn collect_own(aggregate: &mut Aggregate) {
    // Only where this process's view is kept (a worker's declarations are the master's).
    let Some(origin) = OWN_ORIGIN.get().copied() else {
        return;
    };
    if let Some(registry) = REGISTRY.get() {
        let declared = registry.take_declarations();
        if !declared.is_empty() {
            aggregate.declare(origin, 0, declared);
        }
    }
}

/// The process of slot `worker`, generation `generation`, ended.
pub(crate) fn ended(worker: WorkerId, generation: u32) {
    aggregate().ended(Origin::Worker(worker), generation);
}

/// The cluster's metrics now (the master's and the single process's view; empty
/// elsewhere).
pub(crate) fn view() -> View {
    let mut aggregate = aggregate();
    collect_own(&mut aggregate);
    aggregate.view()
}

static OWN_ORIGIN: OnceLock<Origin> = OnceLock::new();

/// The histogram `name` per process, label sets merged.
pub(crate) fn per_process(name: &str) -> Vec<(ProcessKey, Buckets)> {
    let mut aggregate = aggregate();
    collect_own(&mut aggregate);
    aggregate.per_process(name)
}

/// The totals to hand to a new master.
pub(crate) fn totals() -> Vec<(SeriesKey, Total)> {
    let mut aggregate = aggregate();
    collect_own(&mut aggregate);
    aggregate.totals()
}

/// The old master's latest totals (an upgrade): they replace the ones it sent before.
pub(crate) fn set_predecessor(totals: Vec<(SeriesKey, Total)>) {
    aggregate().set_predecessor(totals);
}
