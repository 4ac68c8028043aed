//! The supervision loop: one task that owns the worker table and reacts to worker
//! messages and exits, plugin commands, signals and timers.
//!
//! The loop's reactions are split by concern: `inbound` (what workers say and how they
//! end), `commands` (what plugins and signals ask for), `handover` (successor first,
//! then drain: rolling restarts and recycles), `stop` (shutting the cluster down),
//! `upgrade` (handing the sockets to a new master, SIGUSR2).

mod commands;
mod drains;
mod handover;
mod inbound;
mod stop;
mod timing;
mod upgrade;

use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::panic::AssertUnwindSafe;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::listeners::Listeners;
use super::program::{Build, Program, Source};
use super::spawn::{Inbound, Spawner};
use super::systemd::{Notifier, View};
use super::table::{Life, Slot, WorkerTable};
use super::upgrade::{Predecessor, Report};
use super::{Command, Master};
use crate::WorkerId;
use crate::config::Config;
use crate::event::LifecycleEvent;
use crate::event::WorkerKey;
use crate::ipc::Outbox;
use crate::plugin::Plugins;
use handover::Handovers;
use stop::Stopping;
use upgrade::Upgrading;

/// Runs the master until the cluster stops; returns the process's exit code.
pub(crate) fn run(config: &Config, plugins: Plugins) -> ExitCode {
    crate::limits::raise_nofile();
    let listeners = Listeners::adopt_activated();
    let predecessor = Predecessor::take_from_env();
    // Watch mode: the first master outlives its handovers as their keeper; later masters
    // have a line to it.
    let keeper = if config.watch && predecessor.is_none() {
        super::keeper::become_subreaper();
        match super::keeper::open_line() {
            Some((hearing, line)) => Keeper::Is(Some(hearing), Some(line)),
            None => Keeper::Is(None, None),
        }
    } else {
        Keeper::Isnt(super::keeper::line_from_env())
    };
    let runtime = match crate::runtime::master() {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!("cannot start the master's runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(supervise(config, plugins, listeners, predecessor, keeper));
    runtime.shutdown_background();
    code
}

/// Whether this master is watch mode's keeper (with where it hears of later masters),
/// and its line to the keeper.
enum Keeper {
    Is(Option<super::keeper::Hearing>, Option<super::keeper::Line>),
    Isnt(Option<super::keeper::Line>),
}

/// Something scheduled for later.
#[derive(Debug)]
enum Timer {
    /// A respawn of slot `id` is due.
    Respawn(WorkerId),
    /// An aborted worker's grace is over: SIGKILL it if it is still there.
    Kill(WorkerKey),
    /// A worker a signal made go down: if the master was not signalled too, replace it.
    GoingDown(WorkerKey),
}

/// The signals the master acts on (see `crate::signals` for every signal's meaning).
struct Signals {
    stop: crate::signals::StopSignals,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
    ttin: tokio::signal::unix::Signal,
    ttou: tokio::signal::unix::Signal,
    usr1: tokio::signal::unix::Signal,
    usr2: tokio::signal::unix::Signal,
}

impl Signals {
    fn watch() -> std::io::Result<Signals> {
        crate::signals::ignore(&[SignalKind::window_change()])?;
        Ok(Signals {
            stop: crate::signals::StopSignals::watch()?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
            ttin: signal(SignalKind::from_raw(nix::libc::SIGTTIN))?,
            ttou: signal(SignalKind::from_raw(nix::libc::SIGTTOU))?,
            usr1: signal(SignalKind::user_defined1())?,
            usr2: signal(SignalKind::user_defined2())?,
        })
    }
}

/// What the supervision loop waits on.
struct Inputs {
    /// What the workers' tasks report.
    inbox: mpsc::UnboundedReceiver<(WorkerKey, Inbound)>,
    /// What plugins and the management app ask for.
    commands: mpsc::UnboundedReceiver<Command>,
    timers: mpsc::UnboundedReceiver<Timer>,
    /// What a new master started by an upgrade reports.
    upgrade_reports: mpsc::UnboundedReceiver<Report>,
    signals: Signals,
}

/// What a new master takes over from the old one.
struct TakenOver {
    /// The channel to the old master, to tell it when this one is ready.
    predecessor: Option<Outbox>,
    /// The management app's socket.
    management: Option<std::net::TcpListener>,
    /// What the old master changed at run time.
    changes: Option<crate::master::RunTimeChanges>,
}

async fn supervise(
    config: &Config,
    plugins: Plugins,
    mut listeners: Listeners,
    predecessor: Option<Predecessor>,
    keeper: Keeper,
) -> ExitCode {
    let (hearing, keeper_line, keeper) = match keeper {
        Keeper::Is(hearing, line) => (hearing, line, true),
        Keeper::Isnt(line) => (None, line, false),
    };
    let (master, commands) = Master::new(config);
    let (inbox_tx, inbox) = mpsc::unbounded_channel();
    let (timers_tx, timers) = mpsc::unbounded_channel();
    let (upgrade_tx, upgrade_reports) = mpsc::unbounded_channel();
    let hub = crate::exchange::hub::install(crate::exchange::hub::Side::Master);
    let spawner = match Program::of_this_process().and_then(|p| Ok((p, Build::of_this_process()?)))
    {
        Ok((program, held)) => Spawner::new(program, held, inbox_tx, hub),
        Err(e) => {
            tracing::error!("cannot find this program's executable to spawn workers: {e}");
            return ExitCode::FAILURE;
        }
    };
    let signals = match Signals::watch() {
        Ok(signals) => signals,
        Err(e) => {
            tracing::error!("cannot watch signals: {e}");
            return ExitCode::FAILURE;
        }
    };
    let taken = take_over(predecessor, &mut listeners).await;
    crate::metrics::start_collector(&config.metrics, crate::metrics::Origin::Master);
    if !start_plugins(&plugins, &master).await {
        return ExitCode::FAILURE;
    }
    if let Some(changes) = taken.changes {
        if changes != crate::master::RunTimeChanges::default() {
            tracing::info!("keeping what the old master changed at run time: {changes:?}");
        }
        master.apply(changes);
    }
    master.set_running();
    let (management, management_app) = management_app(
        taken.management,
        &master,
        config,
        taken.predecessor.is_none(),
    );

    let mut sup = Supervisor {
        plugins,
        master,
        hub,
        spawner,
        timers: timers_tx,
        table: WorkerTable::default(),
        listeners,
        pending_respawns: Vec::new(),
        stopping: None,
        handovers: Handovers::default(),
        ever_ready: false,
        timing: timing::Timing::default(),
        notifier: Notifier::from_env(),
        upgrading: None,
        predecessor: taken.predecessor,
        upgrade_reports: upgrade_tx,
        management,
        drain_delay_override: config.drain_delay,
        max_draining_override: config.max_draining,
        hard_stop_override: config.hard_stop_after,
        successor_ready_timeout: config.successor_ready_timeout(),
        upgrade_ready_timeout: config.upgrade_ready_timeout(),
        management_app,
        oom: super::oom::OomWatch::new(),
        groups: super::groups::Groups::new(config.keep_worker_children),
        keeper_line,
    };
    sup.start_workers(config.watch);
    let inputs = Inputs {
        inbox,
        commands,
        timers,
        upgrade_reports,
        signals,
    };
    sup.run(inputs, keeper.then_some(hearing)).await
}

/// On a new master (an upgrade): takes the old master's sockets into `listeners`, and
/// what else it hands over. When that fails, the sockets are bound anew.
async fn take_over(predecessor: Option<Predecessor>, listeners: &mut Listeners) -> TakenOver {
    let nothing = TakenOver {
        predecessor: None,
        management: None,
        changes: None,
    };
    let Some(predecessor) = predecessor else {
        return nothing;
    };
    let old = predecessor.pid();
    tracing::info!("taking over from the old master (pid {old})");
    match predecessor.receive(listeners).await {
        Ok(inherited) => TakenOver {
            predecessor: Some(inherited.answer),
            management: inherited.management,
            changes: Some(inherited.changes),
        },
        Err(e) => {
            tracing::error!("cannot take the old master's sockets: {e}; binding them anew");
            nothing
        }
    }
}

/// Runs the plugins' master hooks; `false` (logged) when one fails.
async fn start_plugins(plugins: &Plugins, master: &Master) -> bool {
    for plugin in plugins {
        if let Err(e) = plugin.on_master(master).await {
            tracing::error!(
                "plugin {} failed to start: {e}; no worker was started",
                plugin.name()
            );
            return false;
        }
    }
    true
}

/// The management app on `inherited` (the old master's socket) or a socket of its own,
/// with a copy of that socket to hand over on an upgrade. It starts now when `start_now`;
/// otherwise once this (new) master's workers are ready: until then the old master's
/// answers on the shared socket (ready, not "starting").
fn management_app(
    inherited: Option<std::net::TcpListener>,
    master: &Master,
    config: &Config,
    start_now: bool,
) -> (Option<(SocketAddr, Arc<OwnedFd>)>, ManagementApp) {
    let listener = inherited.or_else(|| crate::management::bind(master.management_addr()));
    let copy = listener.as_ref().and_then(handover_copy);
    let mut app = ManagementApp::Off;
    if let Some(listener) = listener {
        let (master, config) = (master.clone(), config.clone());
        let start = move || crate::management::start_on(listener, &master, &config);
        app = ManagementApp::Deferred(Box::new(start));
        if start_now {
            app.start();
        }
    }
    (copy, app)
}

impl Supervisor {
    /// Starts the desired workers (and, in watch mode, the watch on the program).
    fn start_workers(&mut self, watch: bool) {
        if watch {
            super::watch::start(
                self.spawner.program().path().to_path_buf(),
                self.master.clone(),
            );
        }
        let workers = self.master.desired_workers();
        tracing::info!("master started; spawning {workers} workers");
        for id in 1..=workers {
            // A failure is retried by `Respawn` (logged and counted either way).
            let _ = self.spawn(WorkerId(id as u32), Source::ClusterBuild);
        }
    }

    /// The loop: reacts to each input until nothing is left to supervise; returns the
    /// process's exit code (in watch mode, the first master's stays as the keeper, with
    /// `keeper` the line it hears later masters on).
    async fn run(
        mut self,
        mut inputs: Inputs,
        keeper: Option<Option<super::keeper::Hearing>>,
    ) -> ExitCode {
        let mut watchdog = self.notifier.watchdog_interval().map(tokio::time::interval);
        let mut backlogs = tokio::time::interval(BACKLOG_CHECK);
        backlogs.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            self.next(&mut inputs, &mut watchdog, &mut backlogs).await;
            self.settle(&mut inputs.commands);
            if let Some(code) = self.finished() {
                self.management_app.finish().await;
                self.groups.finish().await;
                return match (self.master.handed_over_to(), keeper) {
                    (Some(successor), Some(hearing)) => {
                        super::keeper::keep(successor, inputs.upgrade_reports, hearing).await
                    }
                    _ => code,
                };
            }
        }
    }

    /// Waits for the next input (a worker's report, a command, a timer, a signal, a
    /// deadline, a periodic check) and reacts to it.
    async fn next(
        &mut self,
        inputs: &mut Inputs,
        watchdog: &mut Option<tokio::time::Interval>,
        backlogs: &mut tokio::time::Interval,
    ) {
        let drain_deadline = self.stopping.as_ref().and_then(|stop| stop.deadline);
        let drain_at = self.stopping.as_ref().and_then(|stop| stop.drain_at);
        let hard_stop = self.stopping.as_ref().and_then(|stop| stop.hard_stop);
        let handover_deadline = self.handovers.deadline();
        let upgrade_deadline = self.upgrading.as_ref().map(Upgrading::deadline);
        let signals = &mut inputs.signals;
        tokio::select! {
            Some((key, inbound)) = inputs.inbox.recv() => self.on_inbound(key, inbound),
            Some(command) = inputs.commands.recv() => self.on_command(command),
            Some(timer) = inputs.timers.recv() => self.on_timer(timer),
            Some(report) = inputs.upgrade_reports.recv() => self.on_upgrade_report(report),
            name = signals.stop.recv() => self.on_stop_signal(name),
            _ = signals.int.recv() => self.on_stop_signal("SIGINT"),
            _ = signals.usr1.recv() => {
                tracing::info!("SIGUSR1: logs go to stderr, so there is nothing to reopen");
            }
            _ = signals.hup.recv() => {
                tracing::info!("SIGHUP: rolling restart");
                self.on_command(Command::RollingRestart);
            }
            _ = signals.usr2.recv() => {
                tracing::info!("SIGUSR2: upgrading the master");
                self.on_command(Command::Upgrade);
            }
            _ = signals.ttin.recv() => {
                let count = self.master.desired_workers() + 1;
                tracing::info!("SIGTTIN: scaling to {count} workers");
                self.on_command(Command::Scale { count });
            }
            _ = signals.ttou.recv() => {
                let count = self.master.desired_workers().saturating_sub(1);
                tracing::info!("SIGTTOU: scaling to {} workers", count.max(1));
                self.on_command(Command::Scale { count });
            }
            _ = sleep_until(drain_at), if drain_at.is_some() => self.drain_now(),
            _ = sleep_until(hard_stop), if hard_stop.is_some() => self.on_hard_stop(),
            _ = sleep_until(drain_deadline), if drain_deadline.is_some() => self.on_drain_timeout(),
            _ = sleep_until(handover_deadline), if handover_deadline.is_some() => {
                self.on_handover_timeout();
            }
            _ = sleep_until(upgrade_deadline), if upgrade_deadline.is_some() => {
                self.on_upgrade_timeout();
            }
            _ = backlogs.tick() => {
                self.check_backlogs();
                self.check_drains();
            }
            _ = tick(watchdog), if watchdog.is_some() => {
                self.notifier.watchdog(self.is_healthy());
            }
        }
    }

    /// After each reaction: the commands plugins queued in reaction to events are
    /// applied before deciding whether anything is left to supervise, then systemd and
    /// the old master (on an upgrade) hear how things stand.
    fn settle(&mut self, commands: &mut mpsc::UnboundedReceiver<Command>) {
        while let Ok(command) = commands.try_recv() {
            self.on_command(command);
        }
        self.refresh_spawn_error();
        self.cap_drains();
        // systemd hears READY=1 from a new master before the old one names it MAINPID.
        self.notifier.update(self.systemd_view());
        self.answer_predecessor();
    }
}

/// A copy of the management app's socket to hand over on an upgrade.
fn handover_copy(listener: &std::net::TcpListener) -> Option<(SocketAddr, Arc<OwnedFd>)> {
    let addr = listener.local_addr().ok()?;
    match listener.try_clone() {
        Ok(copy) => Some((addr, Arc::new(OwnedFd::from(copy)))),
        Err(e) => {
            tracing::warn!("an upgrade will not keep the management app's socket: {e}");
            None
        }
    }
}

async fn tick(interval: &mut Option<tokio::time::Interval>) {
    match interval {
        Some(interval) => {
            interval.tick().await;
        }
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

struct Supervisor {
    plugins: Plugins,
    master: Master,
    /// The exchange: workers attach to it once they said hello, and detach at exit.
    hub: &'static crate::exchange::hub::Hub,
    spawner: Spawner,
    timers: mpsc::UnboundedSender<Timer>,
    table: WorkerTable,
    listeners: Listeners,
    /// Slots with a respawn scheduled.
    pending_respawns: Vec<WorkerId>,
    stopping: Option<Stopping>,
    handovers: Handovers,
    /// Some worker has been ready at some point: start-up succeeded.
    ever_ready: bool,
    /// Start-up and replacement timings for the log.
    timing: timing::Timing,
    notifier: Notifier,
    /// A new master started by an upgrade, not ready yet.
    upgrading: Option<Upgrading>,
    /// On a new master: the channel to the old one, until this one is ready.
    predecessor: Option<Outbox>,
    upgrade_reports: mpsc::UnboundedSender<Report>,
    /// The management app's socket, for an upgrade to hand over.
    management: Option<(SocketAddr, Arc<OwnedFd>)>,
    /// `WIX_CLUSTER_DRAIN_DELAY`, winning over `Master::drain_delay`.
    drain_delay_override: Option<Duration>,
    /// `WIX_CLUSTER_MAX_DRAINING`, winning over `Master::max_draining`.
    max_draining_override: Option<usize>,
    /// `WIX_CLUSTER_HARD_STOP_AFTER`, winning over `Master::hard_stop_after`.
    hard_stop_override: Option<Duration>,
    /// How long a worker's successor has to become ready (`WIX_CLUSTER_READY_TIMEOUT`).
    successor_ready_timeout: Duration,
    /// How long a new master has to get its workers ready (`WIX_CLUSTER_READY_TIMEOUT`).
    upgrade_ready_timeout: Duration,
    /// The management app, stopped once an upgrade hands its socket over.
    management_app: ManagementApp,
    /// The cgroup's OOM kill count, read at each worker exit for its cause.
    oom: super::oom::OomWatch,
    /// The process groups of ended workers, signalled until they are empty.
    groups: super::groups::Groups,
    /// Watch mode: the line to the keeper, which a new master inherits.
    keeper_line: Option<super::keeper::Line>,
}

/// The master's management app.
enum ManagementApp {
    Off,
    /// Started once this (new) master's workers are ready.
    Deferred(Box<dyn FnOnce() -> crate::management::Serving + Send>),
    Serving(crate::management::Serving),
    /// Stopped accepting: an upgrade handed its socket to the new master.
    HandedOver(crate::management::Serving),
}

impl ManagementApp {
    fn start(&mut self) {
        *self = match std::mem::replace(self, ManagementApp::Off) {
            ManagementApp::Deferred(start) => ManagementApp::Serving(start()),
            other => other,
        };
    }

    fn stop_accepting(&mut self) {
        *self = match std::mem::replace(self, ManagementApp::Off) {
            ManagementApp::Serving(app) => {
                app.stop_accepting();
                ManagementApp::HandedOver(app)
            }
            other => other,
        };
    }

    /// Before the master exits: a management app that stopped accepting at an upgrade
    /// answers the requests it had accepted (the new master's answers the rest).
    async fn finish(self) {
        if let ManagementApp::HandedOver(app) = self {
            app.finish(HANDED_OVER_REQUESTS_TIMEOUT).await;
        }
    }
}

/// How often the master looks at its workers' channel backlogs.
const BACKLOG_CHECK: Duration = Duration::from_secs(1);
/// How long a worker's backlog may stay over [`crate::ipc::BACKLOG_STALL`].
const BACKLOG_PATIENCE: Duration = Duration::from_secs(5);

/// How long an old master waits, before it exits, for its management app to answer the
/// requests it accepted before the handover.
const HANDED_OVER_REQUESTS_TIMEOUT: Duration = Duration::from_secs(2);

impl Supervisor {
    /// Starts a process in slot `id`, which has none; `source` says whether it runs
    /// the cluster's build or (a rolling restart) the program file on disk. A failure
    /// is logged, counted and emitted (`Respawn` retries it) and returned in words.
    fn spawn(&mut self, id: WorkerId, source: Source) -> Result<WorkerKey, String> {
        self.start_process(id, source, false)
    }

    /// Starts a successor for slot `id`'s live worker (a rolling restart, a recycle).
    /// A failure is logged, counted and emitted as a successor's, which is no death of
    /// the slot: the caller stops the roll or the recycle, the worker keeps serving.
    fn spawn_successor(&mut self, id: WorkerId, source: Source) -> Result<WorkerKey, String> {
        self.start_process(id, source, true)
    }

    fn start_process(
        &mut self,
        id: WorkerId,
        source: Source,
        successor: bool,
    ) -> Result<WorkerKey, String> {
        let key = self.table.next_key(id);
        match self.spawner.spawn(key, source) {
            Ok(spawned) => {
                let slot = Slot::new(key, spawned.pid, spawned.out);
                let worker = slot.worker();
                self.table.insert(slot);
                tracing::debug!("forked {worker}");
                self.emit(LifecycleEvent::Fork(worker));
                Ok(key)
            }
            Err(e) => {
                self.table.forget_key(key);
                let error = e.to_string();
                tracing::error!("cannot spawn worker {id}: {error}");
                if !successor {
                    // The cluster is short of a worker until a retry succeeds.
                    self.master
                        .set_spawn_error(Some(format!("cannot spawn worker {id}: {error}")));
                }
                self.emit(LifecycleEvent::SpawnFailed {
                    worker: key.with_pid(0),
                    error: error.clone(),
                    successor,
                });
                Err(error)
            }
        }
    }

    /// A worker whose channel backlog stayed over [`crate::ipc::BACKLOG_STALL`] for
    /// [`BACKLOG_PATIENCE`] does not read what the master sends (stopped, or its loop
    /// blocked): it is treated as stalled (SIGABRT, SIGKILL; `Respawn` replaces it)
    /// instead of growing the master's memory.
    fn check_backlogs(&mut self) {
        let now = std::time::Instant::now();
        let mut stalled = Vec::new();
        for slot in self.table.iter_mut() {
            let backlog = slot.outbox().backlog();
            if backlog <= crate::ipc::BACKLOG_STALL {
                slot.backlog_since = None;
                continue;
            }
            let since = *slot.backlog_since.get_or_insert(now);
            if now.duration_since(since) >= BACKLOG_PATIENCE {
                slot.backlog_since = None;
                stalled.push((slot.key, backlog));
            }
        }
        for (key, backlog) in stalled {
            let reason = format!(
                "{backlog} bytes from the master waited unread on its channel for {:?} \
                 (more than {} bytes)",
                BACKLOG_PATIENCE,
                crate::ipc::BACKLOG_STALL
            );
            self.abort(key, reason);
        }
    }

    /// Forgets the latest spawn error once every desired slot has a process again.
    fn refresh_spawn_error(&self) {
        if self.master.spawn_error().is_some()
            && self.table.occupied().len() >= self.master.desired_workers()
        {
            self.master.set_spawn_error(None);
        }
    }

    /// Runs `timer` after `after`.
    fn schedule(&self, after: Duration, timer: Timer) {
        let timers = self.timers.clone();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            let _ = timers.send(timer);
        });
    }

    fn on_timer(&mut self, timer: Timer) {
        match timer {
            Timer::Respawn(id) => self.on_respawn_due(id),
            Timer::GoingDown(key) => self.on_going_down(key),
            Timer::Kill(key) => {
                if let Some(slot) = self.table.get_mut(key) {
                    tracing::warn!("{} still there after SIGABRT; killing it", slot.worker());
                    slot.kill("it was still there 2 s after the SIGABRT for its stall");
                }
            }
        }
    }

    /// Logs a step of the whole cluster (a rolling restart's, an upgrade's) in the
    /// event log.
    fn note(&self, kind: &'static str, step: String) {
        self.master.event_log().record(kind, None, step);
    }

    /// Workers that are ready and not on their way out.
    fn ready_workers(&self) -> usize {
        self.table
            .iter()
            .filter(|slot| slot.life() == Life::Ready)
            .count()
    }

    /// Serving, and not failing: what systemd's watchdog is told.
    fn is_healthy(&self) -> bool {
        self.stopping.is_none() && !self.master.is_failing() && self.ready_workers() > 0
    }

    fn systemd_view(&self) -> View {
        View {
            ready: self.ready_workers(),
            desired: self.master.desired_workers(),
            rolling: self.handovers.rolling(),
            stopping: self.stopping.is_some(),
        }
    }

    /// The exit code, once there is nothing left to supervise.
    fn finished(&self) -> Option<ExitCode> {
        if !self.table.is_empty() {
            return None;
        }
        if let Some(stop) = &self.stopping {
            tracing::info!("every worker has stopped; master exiting");
            return Some(ExitCode::from(stop.code));
        }
        if self.pending_respawns.is_empty() {
            tracing::error!("no worker is running and none will be respawned; master exiting");
            return Some(ExitCode::FAILURE);
        }
        None
    }

    /// Delivers `event` to the plugins and the event log, with its cause in the
    /// log's words.
    fn emit(&self, event: LifecycleEvent) {
        let cause = crate::event_log::describe(&event);
        self.emit_with_cause(event, cause);
    }

    /// [`Supervisor::emit`] with the cause worded by the caller (an exit's).
    fn emit_with_cause(&self, event: LifecycleEvent, cause: String) {
        self.master
            .event_log()
            .record(event.name(), Some(event.worker()), cause);
        self.master.count(&event);
        for plugin in &self.plugins {
            let delivered = std::panic::catch_unwind(AssertUnwindSafe(|| {
                plugin.on_event(&event, &self.master);
            }));
            if delivered.is_err() {
                tracing::error!(
                    "plugin {} panicked on the {} event",
                    plugin.name(),
                    event.name()
                );
            }
        }
    }
}
