//! Per-worker stats: the sampler that reads each worker's CPU time and resident memory
//! from `/proc` every `sample_interval` (CPU % is the change between two readings), a
//! short history of the samples for the dashboard's charts, the workers that exited
//! lately, custom metrics; and the `/stats` and `/stats/history` pages.
//!
//! Custom metrics are the gauges workers record through the `metrics` facade (the
//! master collects them per slot, [`crate::Master::metrics`]): [`Stats::set_custom`]
//! attaches each slot's to its newest live process.

use parking_lot::Mutex;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use serde_json::{Value, json};

use super::routes::{Ctx, number, unix_seconds};
use super::workers::{self, Row};
use crate::{WorkerId, WorkerInfo, WorkerRef, WorkerState, metrics};

/// How far back the history of samples (the dashboard's charts) goes.
pub(crate) const HISTORY: Duration = Duration::from_secs(5 * 60);

/// How long a worker that exited stays in the tables (state `exited`).
pub(crate) const EXITED_KEPT: Duration = Duration::from_secs(60);

/// The shortest window CPU % is computed over.
const MIN_CPU_WINDOW: Duration = Duration::from_millis(100);

/// Everything known about the workers, live and lately exited.
pub(crate) struct Stats {
    interval: Duration,
    /// By process: slot, generation, pid.
    tracked: Mutex<BTreeMap<WorkerRef, Tracked>>,
}

/// One worker process.
#[derive(Clone)]
pub(crate) struct Tracked {
    /// The latest snapshot the master gave.
    pub(crate) info: WorkerInfo,
    pub(crate) exited_at: Option<SystemTime>,
    /// The latest `/proc` reading.
    pub(crate) cpu_time: Option<Duration>,
    pub(crate) rss_bytes: Option<u64>,
    /// CPU use between the last two readings, in % of one core.
    pub(crate) cpu_percent: Option<f64>,
    pub(crate) sampled_at: Option<SystemTime>,
    read_at: Option<Instant>,
    pub(crate) history: VecDeque<Point>,
    /// The gauges of the worker's slot, by series (`name{label="value"}`).
    pub(crate) custom: BTreeMap<String, f64>,
}

/// One sample of the history.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct Point {
    /// When, in milliseconds since the Unix epoch.
    pub(crate) t: u64,
    pub(crate) cpu_percent: f64,
    pub(crate) rss_bytes: u64,
}

impl Tracked {
    fn new(info: WorkerInfo) -> Tracked {
        Tracked {
            info,
            exited_at: None,
            cpu_time: None,
            rss_bytes: None,
            cpu_percent: None,
            sampled_at: None,
            read_at: None,
            history: VecDeque::new(),
            custom: BTreeMap::new(),
        }
    }

    /// Takes a `/proc` reading: CPU time and RSS, and CPU % since the previous reading.
    fn read(&mut self, keep: usize) {
        let Ok(stat) = crate::procfs::stat(self.info.worker.pid) else {
            return; // gone, or going: its exit shows up in the next snapshot
        };
        if stat.rss_bytes == 0 {
            return; // between fork and exec, or a zombie: nothing to measure yet
        }
        let now = Instant::now();
        let wall_now = SystemTime::now();
        self.rss_bytes = Some(stat.rss_bytes);
        self.sampled_at = Some(wall_now);
        let since = self.read_at.map(|at| now.duration_since(at));
        if since.is_some_and(|since| since < MIN_CPU_WINDOW) {
            // CPU time moves in clock ticks (10 ms): a shorter window gives noise.
            return;
        }
        if let (Some(before), Some(since)) = (self.cpu_time, since) {
            let used = stat.cpu_time.saturating_sub(before).as_secs_f64();
            self.cpu_percent = Some(used / since.as_secs_f64() * 100.0);
        }
        self.cpu_time = Some(stat.cpu_time);
        self.read_at = Some(now);
        if let Some(cpu_percent) = self.cpu_percent {
            self.history.push_back(Point {
                t: (unix_seconds(wall_now) * 1000.0) as u64,
                cpu_percent,
                rss_bytes: stat.rss_bytes,
            });
            while self.history.len() > keep {
                self.history.pop_front();
            }
        }
    }
}

impl Stats {
    pub(crate) fn new(interval: Duration) -> Arc<Stats> {
        Arc::new(Stats {
            interval,
            tracked: Mutex::default(),
        })
    }

    /// How often workers are sampled.
    pub(crate) fn interval(&self) -> Duration {
        self.interval
    }

    /// How many samples the history keeps per worker.
    fn keep(&self) -> usize {
        let per_sample = self.interval.as_millis().max(1);
        ((HISTORY.as_millis() / per_sample) as usize).max(2)
    }

    /// Takes in a snapshot of the live workers: new ones are tracked (and read once, so
    /// that their memory shows at once), missing ones are marked exited, and those that
    /// exited more than [`EXITED_KEPT`] ago are forgotten.
    pub(crate) fn observe(&self, live: &[WorkerInfo]) {
        let keep = self.keep();
        let now = SystemTime::now();
        let mut tracked = self.tracked.lock();
        for info in live {
            tracked
                .entry(info.worker)
                .and_modify(|known| known.info = info.clone())
                .or_insert_with(|| {
                    let mut fresh = Tracked::new(info.clone());
                    fresh.read(keep);
                    fresh
                });
        }
        tracked.retain(|k, known| {
            if known.exited_at.is_none() && !live.iter().any(|info| info.worker == *k) {
                known.exited_at = Some(now);
            }
            known.exited_at.is_none_or(|at| {
                now.duration_since(at)
                    .map(|ago| ago < EXITED_KEPT)
                    .unwrap_or(true)
            })
        });
    }

    /// [`Stats::observe`], then a `/proc` reading of every live worker.
    pub(crate) fn sample(&self, live: &[WorkerInfo]) {
        self.observe(live);
        let keep = self.keep();
        let mut tracked = self.tracked.lock();
        for known in tracked.values_mut() {
            if known.exited_at.is_none() {
                known.read(keep);
            }
        }
    }

    /// Every tracked worker, ordered by slot then generation.
    pub(crate) fn tracked(&self) -> Vec<Tracked> {
        self.tracked.lock().values().cloned().collect()
    }

    /// Attaches the gauges the master collected (by slot) to the newest live process of
    /// each slot; other processes have none. Gauges of a slot with no live process are
    /// left out.
    pub(crate) fn set_custom(&self, view: &metrics::View) {
        let mut collected: BTreeMap<WorkerId, BTreeMap<String, f64>> = BTreeMap::new();
        for (key, by_origin) in &view.gauges {
            for (origin, value) in by_origin {
                if let metrics::Origin::Worker(id) = origin {
                    collected
                        .entry(*id)
                        .or_default()
                        .insert(key.to_string(), *value);
                }
            }
        }
        let mut tracked = self.tracked.lock();
        let mut newest: BTreeMap<WorkerId, &mut Tracked> = BTreeMap::new();
        // Ordered by slot then generation: the last live one of a slot is its newest.
        for known in tracked.values_mut() {
            known.custom.clear();
            if known.exited_at.is_none() {
                newest.insert(known.info.worker.id, known);
            }
        }
        for (worker, known) in newest {
            if let Some(custom) = collected.get(&worker) {
                known.custom = custom.clone();
            }
        }
    }
}

/// The newest live process of each slot: one series per worker, even mid rolling
/// restart when a slot briefly has two processes.
pub(crate) fn newest_per_slot(tracked: &[Tracked]) -> Vec<&Tracked> {
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

/// Samples every live worker every interval, for the life of the process.
pub(crate) async fn sample_forever(ctx: Ctx) {
    let mut ticks = tokio::time::interval(ctx.stats.interval());
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let live = workers::live(&ctx).await;
        ctx.stats.sample(&live);
    }
}

/// A worker's row in `/stats`: its table row plus when it was sampled and its custom
/// metrics.
#[derive(Serialize)]
struct StatRow {
    #[serde(flatten)]
    row: Row,
    /// When CPU and memory were last read (Unix seconds).
    sampled_at: Option<f64>,
    /// The slot's gauges recorded through the `metrics` facade, by series (see
    /// [`number`] for values that are not finite).
    custom: BTreeMap<String, Value>,
}

/// `GET /stats`: cluster counters and the latest stats of every worker.
pub(crate) async fn page(State(ctx): State<Ctx>) -> Json<Value> {
    let tracked = workers::observe(&ctx).await;
    let counters = ctx.master.counters();
    let workers: Vec<StatRow> = tracked
        .iter()
        .map(|known| StatRow {
            row: Row::new(known, &ctx),
            sampled_at: known.sampled_at.map(unix_seconds),
            custom: known
                .custom
                .iter()
                .map(|(name, value)| (name.clone(), number(*value)))
                .collect(),
        })
        .collect();
    Json(json!({
        "sampled_every_ms": ctx.stats.interval().as_millis() as u64,
        "counters": {
            "forked": counters.forked,
            "respawned": counters.respawned,
            "restarts": counters.respawned,
            "exited": counters.exited,
            "died": counters.died,
            "failing": counters.failing,
            "recycled": counters.recycled,
            "stalled": counters.stalled,
            "spawn_failed": counters.spawn_failed,
            "drains_cut": counters.drains_cut,
        },
        "workers": workers,
    }))
}

/// `GET /stats/history`: CPU % and RSS of every worker over the last minutes.
pub(crate) async fn history(State(ctx): State<Ctx>) -> Json<Value> {
    let tracked = workers::observe(&ctx).await;
    let workers: Vec<Value> = tracked
        .iter()
        .map(|known| {
            json!({
                "id": known.info.worker.id.get(),
                "generation": known.info.worker.generation,
                "pid": known.info.worker.pid,
                "state": workers::state_name(known),
                "samples": known.history,
            })
        })
        .collect();
    Json(json!({
        "sampled_every_ms": ctx.stats.interval().as_millis() as u64,
        "kept_seconds": HISTORY.as_secs(),
        "workers": workers,
    }))
}

/// Whether a worker counts as serving.
pub(crate) fn is_ready(known: &Tracked) -> bool {
    known.exited_at.is_none() && known.info.state == WorkerState::Ready
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::WorkerRef;

    fn info(id: u32, pid: u32) -> WorkerInfo {
        WorkerInfo {
            worker: WorkerRef {
                id: WorkerId(id),
                generation: 0,
                pid,
            },
            state: WorkerState::Ready,
            started_at: SystemTime::now(),
            since_heartbeat: Duration::ZERO,
            requests: 0,
            accept_errors: 0,
            connections: crate::OpenConnections::default(),
            load: None,
        }
    }

    #[test]
    fn a_worker_missing_from_the_snapshot_is_marked_exited_and_kept() {
        let stats = Stats::new(Duration::from_secs(1));
        let me = std::process::id();
        stats.observe(&[info(1, me), info(2, u32::MAX)]);
        stats.observe(&[info(1, me)]);
        let tracked = stats.tracked();
        assert_eq!(tracked.len(), 2);
        assert!(tracked[0].exited_at.is_none());
        assert!(tracked[1].exited_at.is_some());
        // The live one (this test process) was read at once.
        assert!(tracked[0].rss_bytes.is_some_and(|rss| rss > 0));
    }

    #[test]
    fn samples_give_cpu_percent_and_a_bounded_history() {
        // A sample every 100 s keeps 3 in the 5-minute history: exceeded below.
        let stats = Stats::new(Duration::from_secs(100));
        assert_eq!(stats.keep(), 3);
        let live = [info(1, std::process::id())];
        stats.sample(&live); // the first reading: no CPU % yet
        assert!(stats.tracked()[0].cpu_percent.is_none());
        for sampled in 1..=6 {
            // Past the shortest CPU window (100 ms), so that each reading counts.
            std::thread::sleep(Duration::from_millis(110));
            stats.sample(&live);
            assert_eq!(stats.tracked()[0].history.len(), sampled.min(3));
        }
        let tracked = stats.tracked();
        assert!(tracked[0].cpu_percent.is_some());
        // The oldest samples went: the three kept are the newest, in order.
        let history: Vec<_> = tracked[0].history.iter().collect();
        assert!(history.windows(2).all(|pair| pair[0].t <= pair[1].t));
    }

    #[test]
    fn custom_metrics_go_to_the_newest_live_process_of_their_slot() {
        let stats = Stats::new(Duration::from_secs(1));
        let mut successor = info(1, 4343);
        successor.worker.generation = 1;
        stats.observe(&[info(1, 4242), successor, info(2, 4444)]);
        let mut view = metrics::View::default();
        let key = |name: &str| metrics::SeriesKey::new(name, Vec::new());
        view.gauges.insert(
            key("queue_depth"),
            [(metrics::Origin::Worker(WorkerId(1)), 3.0)].into(),
        );
        view.gauges.insert(
            key("nobody"),
            [(metrics::Origin::Worker(WorkerId(9)), 1.0)].into(),
        );
        stats.set_custom(&view);
        let tracked = stats.tracked();
        let custom: Vec<(u32, usize)> = tracked
            .iter()
            .map(|t| (t.info.worker.pid, t.custom.len()))
            .collect();
        assert_eq!(custom, [(4242, 0), (4343, 1), (4444, 0)]);
        assert_eq!(tracked[1].custom["queue_depth"], 3.0);
    }
}
