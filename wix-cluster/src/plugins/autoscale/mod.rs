//! `Autoscale`: the worker count follows the load, within bounds, and stops following
//! it while the cluster is failing.

mod policy;

use std::time::{Duration, Instant};

use policy::{Decision, Marks, Policy, Reading, Situation};

use crate::{Master, Plugin, PluginError, WorkerInfo, WorkerState};

/// Runs between `min` and `max` workers, as many as the load needs.
///
/// **The signal is busyness**, read from every worker's heartbeat each second: the
/// share of the time a worker had work in hand (a request of [`crate::http::serve`]
/// from its head until its response head is ready, HTTP/1 requests and HTTP/2 streams;
/// a job the app counts with the [`crate::metrics::APP_BUSY`] gauge) or its event loop
/// ran late, and the most work it had in hand at once. A connection that only waits
/// (an idle keep-alive connection, a WebSocket, an SSE stream after its head) is not
/// busy. With the busy share comes the number of clients: the most requests a worker
/// had in flight at once, or the connections that sent it requests in that second if
/// they are more (a CPU-bound handler on a single-threaded runtime runs one request at
/// a time however many clients wait in their sockets), plus the connections waiting in
/// the listening sockets' accept queues (clients that open a connection per request).
///
/// - **Up** when the workers' mean busy share stays above `high` (default 80%) for
///   `up_after` (default 2 s) *and* they have more clients than there are workers
///   (requests wait for each other somewhere): one worker, then 2, 4 … up to 32 per step while the pressure
///   lasts, each step once the last one's workers are ready; never above `max`, never
///   while the machine's available memory (`MemAvailable`) is below `memory_floor`
///   (default 256 MiB). A single client sending one request at a time keeps one worker
///   busy, but another worker would not serve it faster: it scales nothing.
/// - **Down** when, for `idle_for` (default 60 s), the mean busy share stays below `low`
///   (default 30%), or one worker fewer would have served the same: never was every
///   worker busy at once, and no worker had two clients at once (the workers say on
///   the fair-accepting board when they have work in hand, so a worker starting work
///   knows how many others have some). One client hopping from worker to worker keeps
///   one busy at a time, however busy; two clients each busy half the time keep both
///   busy now and then, and would wait for each other on one. One worker per
///   second, drained gracefully (the highest slot, as [`Master::scale`] does), never
///   below `min`, never while a worker is starting (a roll or recycle mid-handover).
/// - **Safety**: while the cluster is failing ([`Master::is_failing`]: `Respawn`'s
///   cyclic death) or a worker cannot be started ([`Master::spawn_error`]) it does not
///   scale, and says so once. An operator's scale (SIGTTIN, SIGTTOU,
///   `POST /workers/scale`, `wix-cluster scale`) wins for `operator_hold` (default
///   10 min): scaling up sets a floor, scaling down a ceiling, for that long, even
///   outside `min..max`. A master
///   upgrade hands the count over.
/// - **Visible**: every decision is an `autoscale` event with its reason (`busy 93% for
///   2s with 16 clients on 1 worker: 1 -> 2`), `/metrics` has
///   `wix_cluster_autoscale_{min,max,desired}` and `wix_cluster_worker_busy_ratio`.
///
/// `max` may be [`Autoscale::max_auto`] (`max = "auto"` in the macro): the CPUs this
/// process may use (at least `min`), read once at start. `WIX_CLUSTER_AUTOSCALE=min..max` (`1..8`, `2..auto`) turns it on
/// with those bounds even when the program does not name it, and `off` turns it off;
/// `WIX_CLUSTER_AUTOSCALE_MEMORY_FLOOR` overrides the memory floor. Off unless named or
/// set. In single-process mode there is nothing to scale.
#[derive(Debug, Clone)]
pub struct Autoscale {
    min: usize,
    max: Max,
    high: f64,
    low: f64,
    up_after: Duration,
    idle_for: Duration,
    memory_floor: u64,
    operator_hold: Duration,
}

/// `max`: a count, or the CPUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Max {
    Count(usize),
    Cpus,
}

impl Default for Autoscale {
    fn default() -> Self {
        Autoscale {
            min: 1,
            max: Max::Cpus,
            high: 0.8,
            low: 0.3,
            up_after: Duration::from_secs(2),
            idle_for: Duration::from_secs(60),
            memory_floor: DEFAULT_MEMORY_FLOOR,
            operator_hold: Duration::from_secs(600),
        }
    }
}

/// The default memory floor: 256 MiB.
pub const DEFAULT_MEMORY_FLOOR: u64 = 256 * 1024 * 1024;

/// How often the autoscaler reads the workers: once per heartbeat.
const TICK: Duration = Duration::from_secs(1);

/// The value `max = ...` takes: a count, or `"auto"`.
pub trait AutoscaleMax {
    /// Applies it.
    fn apply(self, autoscale: Autoscale) -> Autoscale;
}

impl AutoscaleMax for usize {
    fn apply(self, mut autoscale: Autoscale) -> Autoscale {
        autoscale.max = Max::Count(self);
        autoscale
    }
}

impl AutoscaleMax for i32 {
    fn apply(self, mut autoscale: Autoscale) -> Autoscale {
        // A negative count is reported by `validate` as 0 is.
        autoscale.max = Max::Count(usize::try_from(self).unwrap_or(0));
        autoscale
    }
}

/// `"auto"`: the CPUs. The macro rejects any other string at compile time; through the
/// builder, another string is reported when the cluster starts.
impl AutoscaleMax for &str {
    fn apply(self, mut autoscale: Autoscale) -> Autoscale {
        autoscale.max = if self == "auto" {
            Max::Cpus
        } else {
            Max::Count(0)
        };
        autoscale
    }
}

impl Autoscale {
    /// The fewest workers (at least 1). Default 1.
    pub fn min(mut self, min: usize) -> Self {
        self.min = min;
        self
    }

    /// The most workers: a count, or `"auto"` for the CPUs this process may use (the
    /// default).
    pub fn max(self, max: impl AutoscaleMax) -> Self {
        max.apply(self)
    }

    /// The most workers: the CPUs this process may use.
    pub fn max_auto(mut self) -> Self {
        self.max = Max::Cpus;
        self
    }

    /// The busy share above which it scales up, in percent (1 to 100). Default 80.
    pub fn high(mut self, percent: u32) -> Self {
        self.high = f64::from(percent) / 100.0;
        self
    }

    /// The busy share below which it scales down, in percent (0 to 99, below `high`).
    /// Default 30.
    pub fn low(mut self, percent: u32) -> Self {
        self.low = f64::from(percent) / 100.0;
        self
    }

    /// How long the pressure must last before a step up. Default 2 s.
    pub fn up_after(mut self, after: Duration) -> Self {
        self.up_after = after;
        self
    }

    /// How long the cluster must stay idle before a step down. Default 60 s.
    pub fn idle_for(mut self, idle: Duration) -> Self {
        self.idle_for = idle;
        self
    }

    /// No step up while the machine has less memory available than this, in bytes.
    /// Default 256 MiB; `WIX_CLUSTER_AUTOSCALE_MEMORY_FLOOR` overrides it.
    pub fn memory_floor(mut self, bytes: u64) -> Self {
        self.memory_floor = bytes;
        self
    }

    /// How long an operator's scale sets a floor (up) or a ceiling (down). Default
    /// 10 min.
    pub fn operator_hold(mut self, hold: Duration) -> Self {
        self.operator_hold = hold;
        self
    }

    /// The bounds, `max` resolved (`"auto"`: the CPUs, at least `min`).
    fn bounds(&self) -> (usize, usize) {
        let max = match self.max {
            Max::Count(max) => max,
            Max::Cpus => std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .max(self.min),
        };
        (self.min, max)
    }

    fn validate(&self) -> Result<(), String> {
        let (min, max) = self.bounds();
        let most = crate::limits::MAX_WORKERS;
        if min == 0 || min > most {
            return Err(format!(
                "Autoscale: min must be from 1 to {most}, not {min}"
            ));
        }
        if max == 0 {
            return Err("Autoscale: max must be a count of at least 1, or \"auto\"".into());
        }
        if max < min || max > most {
            return Err(format!(
                "Autoscale: max must be from min ({min}) to {most}, not {max}"
            ));
        }
        if !(self.high > 0.0 && self.high <= 1.0) {
            return Err("Autoscale: high must be from 1 to 100 (percent)".into());
        }
        if !(self.low >= 0.0 && self.low < self.high) {
            return Err("Autoscale: low must be below high".into());
        }
        if self.up_after.is_zero() || self.idle_for.is_zero() {
            return Err("Autoscale: up_after and idle_for must be more than 0".into());
        }
        if self.up_after > MAX_WAIT || self.idle_for > MAX_WAIT || self.operator_hold > MAX_WAIT {
            return Err("Autoscale: up_after, idle_for and operator_hold are at most 1 day".into());
        }
        Ok(())
    }
}

/// The longest wait a setting may ask for.
const MAX_WAIT: Duration = Duration::from_secs(24 * 3600);

impl Plugin for Autoscale {
    fn name(&self) -> &str {
        "Autoscale"
    }

    /// The worker says on the board when it has work in hand (unless
    /// `WIX_CLUSTER_AUTOSCALE=off`): what the master reads as workers busy at once.
    async fn on_worker(&self, _worker: &crate::Worker) -> Result<(), PluginError> {
        if !crate::config::autoscale_is_off(|name| std::env::var(name).ok()) {
            crate::fair_share::gate::share_work();
        }
        Ok(())
    }

    async fn on_master(&self, master: &Master) -> Result<(), PluginError> {
        let mut config = self.clone();
        match master.autoscale_env() {
            Some(crate::config::AutoscaleEnv::Off) => {
                tracing::info!("autoscaling is off ({}=off)", crate::config::ENV_AUTOSCALE);
                return Ok(());
            }
            Some(crate::config::AutoscaleEnv::Bounds { min, max }) => {
                config.min = min;
                config.max = max.map_or(Max::Cpus, Max::Count);
            }
            None => {}
        }
        if let Some(floor) = master.autoscale_memory_floor() {
            config.memory_floor = floor;
        }
        config.validate()?;
        if master.is_single_process() {
            tracing::info!("autoscaling is off: single-process mode has no workers to scale");
            return Ok(());
        }
        let (min, max) = config.bounds();
        let start = master.desired_workers().clamp(min, max);
        master.set_desired_workers(start);
        master.set_autoscale_bounds(Some((min, max)));
        tracing::info!("autoscaling between {min} and {max} workers, starting with {start}");
        let scaler = Scaler {
            bounds: (min, max),
            marks: Marks {
                high: config.high,
                low: config.low,
                up_after: config.up_after,
                idle_for: config.idle_for,
            },
            config,
            master: master.clone(),
            policy: Policy::default(),
            expected: None,
            hold: None,
            frozen: None,
            short_of_memory: false,
        };
        tokio::spawn(scaler.run());
        Ok(())
    }
}

/// An operator's scale, in force until `until`.
struct Hold {
    count: usize,
    /// The operator scaled up: `count` is a floor (else a ceiling).
    floor: bool,
    until: Instant,
}

/// The master-side loop.
struct Scaler {
    config: Autoscale,
    /// `(min, max)`, resolved once at start.
    bounds: (usize, usize),
    marks: Marks,
    master: Master,
    policy: Policy,
    /// The count the autoscaler last set or saw; `None` before the first tick.
    expected: Option<usize>,
    hold: Option<Hold>,
    /// Why it is frozen, while it is.
    frozen: Option<String>,
    /// It said the memory was short, and has not said it recovered.
    short_of_memory: bool,
}

impl Scaler {
    async fn run(mut self) {
        let mut ticks = tokio::time::interval(TICK);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            if self.master.is_stopping() || self.master.handed_over_to().is_some() {
                continue;
            }
            let workers = self.master.workers().await;
            self.tick(Instant::now(), &workers);
        }
    }

    fn record(&self, cause: String) {
        tracing::info!("autoscale: {cause}");
        self.master.event_log().record("autoscale", None, cause);
    }

    fn tick(&mut self, now: Instant, workers: &[WorkerInfo]) {
        let current = self.master.desired_workers();
        if let Some(expected) = self.expected {
            if current != expected {
                self.operator_scaled(now, expected, current);
            }
        }
        self.expected = Some(current);
        if self.hold.as_ref().is_some_and(|hold| now >= hold.until) {
            self.hold = None;
            self.record("the operator's hold is over: following the load again".into());
        }
        if self.check_frozen() {
            return;
        }
        // An operator's count wins for the hold, even outside the bounds.
        let (mut min, mut max) = self.bounds;
        if let Some(hold) = &self.hold {
            if hold.floor {
                min = hold.count;
                max = max.max(hold.count);
            } else {
                max = hold.count;
                min = min.min(hold.count);
            }
        }
        let starting = is_starting(workers);
        let may_up = !starting && self.memory_allows();
        let reading = reading(workers, self.master.accept_queue());
        tracing::debug!(
            ?reading,
            current,
            min,
            max,
            starting,
            may_up,
            "autoscale: a reading"
        );
        let decision = self.policy.decide(
            now,
            reading,
            Situation {
                current,
                bounds: (min, max),
                may_up,
                may_down: !starting,
            },
            &self.marks,
        );
        if let Decision::Scale { to, reason } = decision {
            self.record(reason);
            self.expected = Some(to);
            self.master.scale(to);
            self.master.set_desired_workers(to);
        }
    }

    /// Someone else scaled from `from` to `to`.
    fn operator_scaled(&mut self, now: Instant, from: usize, to: usize) {
        let floor = to > from;
        let hold = self.config.operator_hold;
        self.record(format!(
            "scaled by an operator: {from} -> {to}; at {} {to} workers for {}",
            if floor { "least" } else { "most" },
            humantime::format_duration(hold)
        ));
        self.hold = Some(Hold {
            count: to,
            floor,
            until: now + hold,
        });
        self.policy.reset();
    }

    /// Whether the cluster is failing; says so when that changes.
    fn check_frozen(&mut self) -> bool {
        let why = if self.master.is_failing() {
            Some("the cluster is failing (cyclic death)".to_owned())
        } else {
            self.master
                .spawn_error()
                .map(|error| format!("a worker cannot be started ({error})"))
        };
        match (&self.frozen, why) {
            (None, Some(why)) => {
                tracing::warn!("autoscale: frozen: {why}");
                self.master.event_log().record(
                    "autoscale",
                    None,
                    format!("frozen: {why}; no scaling until it recovers"),
                );
                self.frozen = Some(why);
                self.policy.reset();
                true
            }
            (Some(_), Some(_)) => true,
            (Some(_), None) => {
                self.frozen = None;
                self.record("the cluster recovered: following the load again".into());
                false
            }
            (None, None) => false,
        }
    }

    /// Whether the machine has the memory for more workers; says so once when not.
    fn memory_allows(&mut self) -> bool {
        let floor = self.config.memory_floor;
        let available = match crate::procfs::mem_available() {
            Ok(available) => available,
            // Without a reading, the floor cannot be checked: it does not stop anything.
            Err(_) => return true,
        };
        if available >= floor {
            if self.short_of_memory {
                self.short_of_memory = false;
                self.record(format!(
                    "memory available again ({} MiB, floor {} MiB): scaling up is allowed",
                    available >> 20,
                    floor >> 20
                ));
            }
            return true;
        }
        if !self.short_of_memory {
            self.short_of_memory = true;
            tracing::warn!(
                "autoscale: no scaling up: {} MiB of memory available, below the floor of {} MiB",
                available >> 20,
                floor >> 20
            );
            self.master.event_log().record(
                "autoscale",
                None,
                format!(
                    "no scaling up: {} MiB of memory available, below the floor of {} MiB",
                    available >> 20,
                    floor >> 20
                ),
            );
        }
        false
    }
}

/// Whether a worker is starting: a process that has not said hello, or a slot with
/// two processes (a successor mid-handover: a roll, a recycle). A worker that never
/// listens (an app that serves no HTTP) stays online, and is not starting.
fn is_starting(workers: &[WorkerInfo]) -> bool {
    let mut slots = std::collections::HashSet::new();
    workers.iter().any(|w| {
        w.state == WorkerState::Starting
            || (w.state != WorkerState::Draining && !slots.insert(w.worker.id))
    })
}

/// The workers that count (ready or online, not draining, with a load reading), and the
/// connections `waiting` in the accept queues: clients too.
fn reading(workers: &[WorkerInfo], waiting: u64) -> Option<Reading> {
    let loads: Vec<_> = workers
        .iter()
        .filter(|w| matches!(w.state, WorkerState::Ready | WorkerState::Online))
        .filter_map(|w| w.load)
        .collect();
    if loads.is_empty() {
        return None;
    }
    // A late event loop is busy too (an app blocking it), for the pressure; what fits
    // on fewer workers is the work they had in hand.
    let busy = loads
        .iter()
        .map(|load| (load.busy + load.lag).min(1.0))
        .sum::<f64>();
    // Unknown if any worker does not say.
    let together = loads
        .iter()
        .map(|load| load.together.map(|n| n as usize))
        .try_fold(0, |most, n| n.map(|n| most.max(n)))
        .map(|most| most.min(loads.len()));
    let clients = loads
        .iter()
        .map(|load| u64::from(load.peak))
        .sum::<u64>()
        .saturating_add(waiting);
    Some(Reading {
        busy: busy / loads.len() as f64,
        clients,
        contended: loads.iter().any(|load| load.peak >= 2),
        together,
        counted: loads.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid_and_bad_values_are_clear_errors() {
        assert_eq!(Autoscale::default().validate(), Ok(()));
        let cases = [
            (Autoscale::default().min(0), "min must be from 1"),
            (
                Autoscale::default().min(3).max(2usize),
                "max must be from min (3)",
            ),
            (
                Autoscale::default().max("lots"),
                "max must be a count of at least 1, or \"auto\"",
            ),
            (Autoscale::default().max(-1), "max must be a count"),
            (Autoscale::default().high(0), "high must be from 1 to 100"),
            (
                Autoscale::default().high(50).low(50),
                "low must be below high",
            ),
            (
                Autoscale::default().idle_for(Duration::ZERO),
                "must be more than 0",
            ),
        ];
        for (autoscale, expected) in cases {
            let error = autoscale.validate().unwrap_err();
            assert!(
                error.contains(expected),
                "{error:?} should say {expected:?}"
            );
        }
        assert_eq!(Autoscale::default().min(2).max(8).bounds(), (2, 8));
        assert!(Autoscale::default().max("auto").bounds().1 >= 1);
    }
}
