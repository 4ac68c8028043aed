//! [`Master`]: what plugins (and later the management app) may ask of the master.

use parking_lot::Mutex;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, oneshot};

use crate::config::Config;
use crate::event_log::{EVENT_LOG_CAPACITY, EventLog, EventRecord};
use crate::{LifecycleEvent, WorkerId, WorkerInfo, WorkerRef};

/// A request to the supervision loop.
#[derive(Debug)]
pub(crate) enum Command {
    /// Start a new process in slot `id` once `after` has passed.
    Respawn { id: WorkerId, after: Duration },
    /// Retire `worker` now (it drains) and start its successor after `after`.
    Replace { worker: WorkerRef, after: Duration },
    /// Replace every worker, one at a time, each successor ready before its
    /// predecessor drains.
    RollingRestart,
    /// Run `count` workers (at least 1).
    Scale { count: usize },
    /// Start `worker`'s successor, then drain it once the successor is ready.
    Recycle { worker: WorkerRef, reason: String },
    /// `worker` is stalled: SIGABRT now, SIGKILL after a grace.
    Abort { worker: WorkerRef, reason: String },
    /// Answer with a snapshot of every worker.
    Snapshot(oneshot::Sender<Vec<WorkerInfo>>),
    /// Stop every worker gracefully, then exit with `code`.
    Shutdown { code: u8 },
    /// Start a new master and hand it the listening sockets.
    Upgrade,
}

/// A handle on the master, given to plugin hooks. Cheap to clone; usable from any task.
#[derive(Clone)]
pub struct Master {
    commands: mpsc::UnboundedSender<Command>,
    shared: Arc<Shared>,
}

/// Cluster-wide counts since the master started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClusterCounters {
    /// Worker processes started (the first ones included).
    pub forked: u64,
    /// Starts of a slot that had a worker before (respawns, replacements, recycles,
    /// rolling restarts).
    pub respawned: u64,
    /// Worker processes that ended, for whatever reason.
    pub exited: u64,
    /// Worker processes that ended without being asked to.
    pub died: u64,
    /// Workers that announced they were going down (app error, panic, SIGTERM).
    pub failing: u64,
    /// Graceful replacements (rolling restart excluded): `max_requests`, CPU, memory.
    pub recycled: u64,
    /// Workers killed for a late heartbeat.
    pub stalled: u64,
    /// Attempts to start a worker process that failed (see
    /// [`LifecycleEvent::SpawnFailed`]).
    pub spawn_failed: u64,
    /// Drains cut short because more than `max_draining` old workers of a slot were
    /// draining ([`Master::max_draining`]).
    pub drains_cut: u64,
}

impl ClusterCounters {
    fn count(&mut self, event: &LifecycleEvent) {
        match event {
            LifecycleEvent::Fork(worker) => {
                self.forked += 1;
                if worker.generation > 0 {
                    self.respawned += 1;
                }
            }
            LifecycleEvent::Exit { requested, .. } => {
                self.exited += 1;
                if !requested {
                    self.died += 1;
                }
            }
            LifecycleEvent::Failing { .. } => self.failing += 1,
            LifecycleEvent::Recycled { .. } => self.recycled += 1,
            LifecycleEvent::Stalled { .. } => self.stalled += 1,
            LifecycleEvent::SpawnFailed { .. } => self.spawn_failed += 1,
            _ => {}
        }
    }
}

/// What was changed at run time, after the plugins' start-up hooks: a master upgrade
/// hands it to the new master, which applies it after its own plugins' hooks (so a
/// scaled cluster stays scaled). What plugins set at start-up is the new build's own.
/// The failing flag is not handed over: the new master's workers were all ready.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct RunTimeChanges {
    pub(crate) workers: Option<usize>,
    pub(crate) drain_delay: Option<Duration>,
    pub(crate) drain_timeout: Option<Duration>,
}

struct Shared {
    started_at: SystemTime,
    /// The plugins' start-up hooks have run: changes from now on are run-time changes.
    running: AtomicBool,
    changes: Mutex<RunTimeChanges>,
    counters: Mutex<ClusterCounters>,
    app_addrs: Mutex<Vec<SocketAddr>>,
    desired: AtomicUsize,
    single_process: bool,
    management: SocketAddr,
    drain_timeout: Mutex<Duration>,
    drain_delay: Mutex<Duration>,
    max_draining: AtomicUsize,
    hard_stop_after: Mutex<Option<Duration>>,
    failing: AtomicBool,
    stopping: AtomicBool,
    /// The pid of the master an upgrade handed the cluster to; 0 before.
    successor: AtomicU32,
    /// Why the latest attempt to start a worker failed, while the cluster is short of
    /// its desired count because of it.
    spawn_error: Mutex<Option<String>>,
    events: Arc<EventLog>,
    /// `WIX_CLUSTER_AUTOSCALE` and `WIX_CLUSTER_AUTOSCALE_MEMORY_FLOOR`.
    autoscale_env: Option<crate::config::AutoscaleEnv>,
    autoscale_memory_floor: Option<u64>,
    /// The autoscaler's bounds, while it runs.
    autoscale_bounds: Mutex<Option<(usize, usize)>>,
    /// The app's listening sockets, for their accept queues.
    accept_queues: super::accept_queue::AcceptQueues,
}

impl Master {
    pub(crate) fn new(config: &Config) -> (Master, mpsc::UnboundedReceiver<Command>) {
        let (commands, receiver) = mpsc::unbounded_channel();
        let master = Master {
            commands,
            shared: Arc::new(Shared {
                started_at: SystemTime::now(),
                running: AtomicBool::new(false),
                changes: Mutex::default(),
                counters: Mutex::default(),
                app_addrs: Mutex::default(),
                desired: AtomicUsize::new(if config.single_process {
                    1
                } else {
                    config.workers
                }),
                single_process: config.single_process,
                management: config.management,
                drain_timeout: Mutex::new(crate::config::DEFAULT_DRAIN_TIMEOUT),
                drain_delay: Mutex::new(Duration::ZERO),
                max_draining: AtomicUsize::new(crate::config::DEFAULT_MAX_DRAINING),
                hard_stop_after: Mutex::new(None),
                failing: AtomicBool::new(false),
                stopping: AtomicBool::new(false),
                successor: AtomicU32::new(0),
                spawn_error: Mutex::new(None),
                events: Arc::new(EventLog::new(EVENT_LOG_CAPACITY)),
                autoscale_env: config.autoscale,
                autoscale_memory_floor: config.autoscale_memory_floor,
                autoscale_bounds: Mutex::new(None),
                accept_queues: super::accept_queue::AcceptQueues::default(),
            }),
        };
        (master, receiver)
    }

    /// How many workers the cluster keeps running (changed by [`Master::scale`]).
    pub fn desired_workers(&self) -> usize {
        self.shared.desired.load(Ordering::Relaxed)
    }

    pub(crate) fn set_desired_workers(&self, count: usize) {
        self.shared.desired.store(count, Ordering::Relaxed);
        self.record(|changes| changes.workers = Some(count));
    }

    /// Start-up is over: later changes are handed to a new master by an upgrade.
    pub(crate) fn set_running(&self) {
        self.shared.running.store(true, Ordering::Relaxed);
    }

    fn record(&self, change: impl FnOnce(&mut RunTimeChanges)) {
        if self.shared.running.load(Ordering::Relaxed) {
            change(&mut self.shared.changes.lock());
        }
    }

    /// What was changed at run time, for an upgrade to hand over.
    pub(crate) fn run_time_changes(&self) -> RunTimeChanges {
        *self.shared.changes.lock()
    }

    /// Applies what the old master changed at run time (a new master, after its
    /// plugins' hooks); it counts as changed here too, for the next upgrade.
    pub(crate) fn apply(&self, changes: RunTimeChanges) {
        if let Some(workers) = changes.workers {
            self.set_desired_workers(workers);
        }
        if let Some(delay) = changes.drain_delay {
            self.set_drain_delay(delay);
        }
        if let Some(timeout) = changes.drain_timeout {
            self.set_drain_timeout(timeout);
        }
    }

    /// Whether the cluster runs as one process.
    pub fn is_single_process(&self) -> bool {
        self.shared.single_process
    }

    /// When the master started.
    pub fn started_at(&self) -> SystemTime {
        self.shared.started_at
    }

    /// The cluster's counts so far.
    pub fn counters(&self) -> ClusterCounters {
        *self.shared.counters.lock()
    }

    /// Counts a drain cut short ([`ClusterCounters::drains_cut`]).
    pub(crate) fn count_drain_cut(&self) {
        self.shared.counters.lock().drains_cut += 1;
    }

    pub(crate) fn count(&self, event: &LifecycleEvent) {
        self.shared.counters.lock().count(event);
    }

    /// The master's event log after `since` (a [`EventRecord::seq`]; `None` for every
    /// entry kept), newest first: the last [`EVENT_LOG_CAPACITY`] lifecycle events and
    /// rolling-restart and upgrade steps, each with its cause in words. Empty in
    /// single-process mode; a new master (after an upgrade) starts a log of its own.
    pub fn events(&self, since: Option<u64>) -> Vec<EventRecord> {
        self.shared.events.since(since)
    }

    /// The log itself, for the management app's stream and the supervisor.
    pub(crate) fn event_log(&self) -> &Arc<EventLog> {
        &self.shared.events
    }

    /// The cluster's metrics recorded through the `metrics` facade (by the app, its
    /// libraries and `wix_cluster` itself): counters and histograms summed over every
    /// process, gauges per worker (see [`crate::metrics`]).
    pub fn metrics(&self) -> crate::metrics::View {
        crate::metrics::view()
    }

    /// The addresses the master bound for the app's listeners (the real ports).
    pub fn app_addrs(&self) -> Vec<SocketAddr> {
        self.shared.app_addrs.lock().clone()
    }

    pub(crate) fn add_app_addr(&self, addr: SocketAddr) {
        let mut addrs = self.shared.app_addrs.lock();
        if !addrs.contains(&addr) {
            addrs.push(addr);
        }
    }

    /// Where the management app listens (`127.0.0.1:8084` unless configured).
    pub fn management_addr(&self) -> SocketAddr {
        self.shared.management
    }

    /// Starts a replacement process in slot `id` after `after`. Ignored while the
    /// cluster is stopping or if the slot is occupied by then.
    pub fn respawn(&self, id: WorkerId, after: Duration) {
        let _ = self.commands.send(Command::Respawn { id, after });
    }

    /// Retires `worker` (it drains, then exits) and starts its successor in the same
    /// slot after `after`.
    pub fn replace(&self, worker: WorkerRef, after: Duration) {
        let _ = self.commands.send(Command::Replace { worker, after });
    }

    /// Replaces every worker one at a time; each successor is ready before the worker it
    /// replaces starts draining. The program is re-read from disk, so this deploys a
    /// new build. Also on SIGHUP.
    pub fn rolling_restart(&self) {
        let _ = self.commands.send(Command::RollingRestart);
    }

    /// Runs `count` workers (at least 1): starts new ones, or drains the highest ids.
    /// Also on SIGTTIN (one more) and SIGTTOU (one fewer).
    pub fn scale(&self, count: usize) {
        let _ = self.commands.send(Command::Scale { count });
    }

    /// Replaces `worker` gracefully: its successor starts in the same slot, and once it
    /// is ready `worker` drains. The cluster never has fewer ready workers than
    /// desired for longer than a successor takes to start.
    pub fn recycle(&self, worker: WorkerRef, reason: impl Into<String>) {
        let reason = reason.into();
        let _ = self.commands.send(Command::Recycle { worker, reason });
    }

    /// Treats `worker` as stalled: logs `reason`, sends SIGABRT (a core dump or
    /// backtrace where enabled), then SIGKILL after 2 s. `Respawn` replaces it.
    pub fn abort(&self, worker: WorkerRef, reason: impl Into<String>) {
        let reason = reason.into();
        let _ = self.commands.send(Command::Abort { worker, reason });
    }

    /// A snapshot of every live worker process (empty in single-process mode, or when
    /// the master is gone).
    pub async fn workers(&self) -> Vec<WorkerInfo> {
        let (reply, answer) = oneshot::channel();
        if self.commands.send(Command::Snapshot(reply)).is_err() {
            return Vec::new();
        }
        answer.await.unwrap_or_default()
    }

    /// Stops every worker gracefully; the master then exits with `exit_code`.
    pub fn shutdown(&self, exit_code: u8) {
        let _ = self.commands.send(Command::Shutdown { code: exit_code });
    }

    /// Replaces this master without closing the port (also on SIGUSR2): starts a new
    /// master from the program's binary on disk and hands it every listening socket;
    /// once the new master's workers are all ready, this master drains its own workers
    /// and exits 0. If the new master fails or is not ready within 60 s, this one keeps
    /// serving and logs why. Ignored while an upgrade or a stop is in progress.
    pub fn upgrade(&self) {
        let _ = self.commands.send(Command::Upgrade);
    }

    /// How long a stopping worker has to exit before it is killed (default 5 s).
    pub fn drain_timeout(&self) -> Duration {
        *self.shared.drain_timeout.lock()
    }

    /// How long a stop reports not ready, workers still serving, before they drain
    /// (default 0; `Graceful(delay = ..)`; `WIX_CLUSTER_DRAIN_DELAY` wins over both).
    pub fn drain_delay(&self) -> Duration {
        *self.shared.drain_delay.lock()
    }

    /// How many old workers of one slot may drain at once (default 2; `Graceful`'s
    /// `max_draining`; `WIX_CLUSTER_MAX_DRAINING` wins over both). A roll, recycle or
    /// replacement that would leave more tells the oldest its drain is over: it closes
    /// what is left (WebSockets with their close frame) and exits, or is killed 1 s
    /// later.
    pub fn max_draining(&self) -> usize {
        self.shared.max_draining.load(Ordering::Relaxed)
    }

    /// How long a stopping master (a stop, or the old master once an upgrade handed
    /// over) may take in all before it kills every worker still there and exits: `None`
    /// for the default, the drain delay plus the drain timeout plus 5 s (never, with a
    /// drain timeout of `Duration::MAX`). `Graceful`'s `hard_stop_after`;
    /// `WIX_CLUSTER_HARD_STOP_AFTER` wins over both.
    pub fn hard_stop_after(&self) -> Option<Duration> {
        *self.shared.hard_stop_after.lock()
    }

    /// Sets [`Master::hard_stop_after`].
    pub fn set_hard_stop_after(&self, after: Option<Duration>) {
        *self.shared.hard_stop_after.lock() = after;
    }

    /// Sets [`Master::max_draining`] (at least 1).
    pub fn set_max_draining(&self, max: usize) {
        self.shared.max_draining.store(
            max.clamp(1, crate::config::MAX_MAX_DRAINING),
            Ordering::Relaxed,
        );
    }

    /// Sets [`Master::drain_delay`].
    pub fn set_drain_delay(&self, delay: Duration) {
        *self.shared.drain_delay.lock() = delay;
        self.record(|changes| changes.drain_delay = Some(delay));
    }

    /// Whether the cluster is stopping (from the stop signal on, the drain delay
    /// included): the management app's `/health/ready` answers 503.
    pub fn is_stopping(&self) -> bool {
        // Acquire, paired with `set_stopping`: a reader that sees the stop sees the
        // successor a handover set before it.
        self.shared.stopping.load(Ordering::Acquire)
    }

    pub(crate) fn set_stopping(&self) {
        self.shared.stopping.store(true, Ordering::Release);
    }

    /// The pid of the new master this one handed the cluster to (a master upgrade,
    /// SIGUSR2), once that master's workers are ready. From then on this master only
    /// drains its own workers; the management app's health pages answer for the new
    /// one, which serves the same sockets.
    pub fn handed_over_to(&self) -> Option<u32> {
        match self.shared.successor.load(Ordering::Relaxed) {
            0 => None,
            pid => Some(pid),
        }
    }

    pub(crate) fn set_handed_over_to(&self, pid: u32) {
        self.shared.successor.store(pid, Ordering::Relaxed);
    }

    /// Why the latest attempt to start a worker failed, while the cluster has fewer
    /// workers than desired because of it (`None` once every desired worker runs).
    /// The management app's `/health/ready` and dashboard show it.
    pub fn spawn_error(&self) -> Option<String> {
        self.shared.spawn_error.lock().clone()
    }

    pub(crate) fn set_spawn_error(&self, error: Option<String>) {
        *self.shared.spawn_error.lock() = error;
    }

    /// Sets [`Master::drain_timeout`].
    pub fn set_drain_timeout(&self, timeout: Duration) {
        *self.shared.drain_timeout.lock() = timeout;
        self.record(|changes| changes.drain_timeout = Some(timeout));
    }

    /// Whether a plugin reported the cluster as failing (for example `Respawn` after
    /// cyclic death). Health checks report it.
    pub fn is_failing(&self) -> bool {
        self.shared.failing.load(Ordering::Relaxed)
    }

    /// The bounds [`crate::plugins::Autoscale`] keeps the worker count within, `(min, max)`,
    /// while it runs (`None` without it).
    pub fn autoscale_bounds(&self) -> Option<(usize, usize)> {
        *self.shared.autoscale_bounds.lock()
    }

    pub(crate) fn set_autoscale_bounds(&self, bounds: Option<(usize, usize)>) {
        *self.shared.autoscale_bounds.lock() = bounds;
    }

    /// A listening socket the master shares with its workers.
    pub(crate) fn add_app_listener(&self, fd: &Arc<std::os::fd::OwnedFd>) {
        self.shared.accept_queues.add(fd);
    }

    /// Connections waiting in the accept queues of the app's listening sockets: clients
    /// no worker has taken yet.
    pub(crate) fn accept_queue(&self) -> u64 {
        self.shared.accept_queues.waiting()
    }

    pub(crate) fn autoscale_env(&self) -> Option<crate::config::AutoscaleEnv> {
        self.shared.autoscale_env
    }

    pub(crate) fn autoscale_memory_floor(&self) -> Option<u64> {
        self.shared.autoscale_memory_floor
    }

    /// Sets [`Master::is_failing`].
    pub fn set_failing(&self, failing: bool) {
        self.shared.failing.store(failing, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for Master {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Master")
            .field("desired_workers", &self.desired_workers())
            .field("single_process", &self.is_single_process())
            .field("failing", &self.is_failing())
            .finish()
    }
}
