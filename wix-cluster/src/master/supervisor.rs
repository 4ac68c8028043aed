//! The supervision loop: one task that owns the worker table and reacts to worker
//! messages and exits, plugin commands, signals and timers.

use std::panic::AssertUnwindSafe;
use std::process::ExitCode;

use nix::sys::signal::Signal;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::listeners::Listeners;
use super::roll::Roll;
use super::spawn::{self, Inbound, Key, Spawner};
use super::table::{Slot, State, WorkerTable};
use super::{Command, Master};
use crate::WorkerId;
use crate::config::Config;
use crate::event::{ExitReason, LifecycleEvent};
use crate::plugin::Plugins;
use crate::protocol::{PROTOCOL_VERSION, ToMaster, ToWorker};

/// Runs the master until the cluster stops; returns the process's exit code.
pub(crate) fn run(config: &Config, plugins: Plugins) -> ExitCode {
    let runtime = match crate::runtime::master() {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!("cannot start the master's runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(supervise(config, plugins));
    runtime.shutdown_background();
    code
}

/// The signals the master acts on.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
    ttin: tokio::signal::unix::Signal,
    ttou: tokio::signal::unix::Signal,
}

impl Signals {
    fn watch() -> std::io::Result<Signals> {
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
            ttin: signal(SignalKind::from_raw(nix::libc::SIGTTIN))?,
            ttou: signal(SignalKind::from_raw(nix::libc::SIGTTOU))?,
        })
    }
}

async fn supervise(config: &Config, plugins: Plugins) -> ExitCode {
    let (master, mut commands) = Master::new(config);
    let (inbox_tx, mut inbox) = mpsc::unbounded_channel();
    let (due_tx, mut due) = mpsc::unbounded_channel();
    let spawner = match Spawner::new(inbox_tx) {
        Ok(spawner) => spawner,
        Err(e) => {
            tracing::error!("cannot find this program's executable to spawn workers: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut signals = match Signals::watch() {
        Ok(signals) => signals,
        Err(e) => {
            tracing::error!("cannot watch signals: {e}");
            return ExitCode::FAILURE;
        }
    };
    for plugin in &plugins {
        if let Err(e) = plugin.on_master(&master).await {
            tracing::error!(
                "plugin {} failed to start: {e}; no worker was started",
                plugin.name()
            );
            return ExitCode::FAILURE;
        }
    }

    let mut sup = Supervisor {
        plugins,
        master,
        spawner,
        due: due_tx,
        table: WorkerTable::default(),
        listeners: Listeners::default(),
        pending_respawns: Vec::new(),
        stopping: None,
        roll: None,
        ever_ready: false,
    };
    tracing::info!("master started; spawning {} workers", config.workers);
    for id in 1..=config.workers {
        sup.spawn(WorkerId(id as u32));
    }

    loop {
        let drain_deadline = sup.stopping.as_ref().and_then(|stop| stop.deadline);
        let roll_deadline = sup.roll.as_ref().and_then(Roll::deadline);
        tokio::select! {
            Some((key, inbound)) = inbox.recv() => sup.on_inbound(key, inbound),
            Some(command) = commands.recv() => sup.on_command(command),
            Some(id) = due.recv() => sup.on_respawn_due(id),
            _ = signals.term.recv() => sup.on_stop_signal("SIGTERM"),
            _ = signals.int.recv() => sup.on_stop_signal("SIGINT"),
            _ = signals.hup.recv() => {
                tracing::info!("SIGHUP: rolling restart");
                sup.on_command(Command::RollingRestart);
            }
            _ = signals.ttin.recv() => {
                let count = sup.master.desired_workers() + 1;
                tracing::info!("SIGTTIN: scaling to {count} workers");
                sup.on_command(Command::Scale { count });
            }
            _ = signals.ttou.recv() => {
                let count = sup.master.desired_workers().saturating_sub(1);
                tracing::info!("SIGTTOU: scaling to {} workers", count.max(1));
                sup.on_command(Command::Scale { count });
            }
            _ = sleep_until(drain_deadline), if drain_deadline.is_some() => sup.on_drain_timeout(),
            _ = sleep_until(roll_deadline), if roll_deadline.is_some() => sup.on_roll_timeout(),
        }
        // Plugins react to events by queueing commands; apply them before deciding
        // whether anything is left to supervise.
        while let Ok(command) = commands.try_recv() {
            sup.on_command(command);
        }
        if let Some(code) = sup.finished() {
            return code;
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

struct Stopping {
    code: u8,
    /// When still-running workers get killed; `None` once they have been.
    deadline: Option<Instant>,
}

struct Supervisor {
    plugins: Plugins,
    master: Master,
    spawner: Spawner,
    due: mpsc::UnboundedSender<WorkerId>,
    table: WorkerTable,
    listeners: Listeners,
    /// Slots with a respawn scheduled.
    pending_respawns: Vec<WorkerId>,
    stopping: Option<Stopping>,
    roll: Option<Roll>,
    /// Some worker has been ready at some point: start-up succeeded.
    ever_ready: bool,
}

impl Supervisor {
    fn spawn(&mut self, id: WorkerId) -> Option<Key> {
        let key = self.table.next_key(id);
        match self.spawner.spawn(key) {
            Ok(spawned) => {
                let slot = Slot::new(key, spawned.pid, spawned.out);
                let worker = slot.worker();
                self.table.insert(slot);
                tracing::debug!("forked {worker}");
                self.emit(LifecycleEvent::Fork(worker));
                Some(key)
            }
            Err(e) => {
                tracing::error!("cannot spawn worker {id}: {e}");
                None
            }
        }
    }

    fn on_inbound(&mut self, key: Key, inbound: Inbound) {
        let Some(slot) = self.table.get_mut(key) else {
            return;
        };
        let worker = slot.worker();
        match inbound {
            Inbound::Message(ToMaster::Hello { version, pid }) if slot.state == State::Starting => {
                if version != PROTOCOL_VERSION || pid != slot.pid {
                    let reason = format!("bad hello (protocol {version}, pid {pid})");
                    self.drop_worker(key, &reason);
                    return;
                }
                let drain_timeout_ms =
                    u64::try_from(self.master.drain_timeout().as_millis()).unwrap_or(u64::MAX);
                slot.send(
                    &ToWorker::Welcome {
                        version: PROTOCOL_VERSION,
                        drain_timeout_ms,
                    },
                    None,
                );
                slot.state = State::Online;
                if slot.retiring {
                    // Stopped before it was even online: tell it now.
                    slot.send(&ToWorker::Shutdown, None);
                }
                self.emit(LifecycleEvent::Online(worker));
            }
            Inbound::Message(_) if slot.state == State::Starting => {
                self.drop_worker(key, "spoke before its hello");
            }
            Inbound::Message(ToMaster::Hello { .. }) => self.drop_worker(key, "said hello twice"),
            Inbound::Message(ToMaster::Listen { request, addr }) => {
                match self.listeners.get_or_bind(addr) {
                    Ok(bound) => {
                        let msg = ToWorker::Listener {
                            request,
                            addr: bound.addr,
                        };
                        slot.send(&msg, Some(bound.fd));
                        self.emit(LifecycleEvent::Listening(worker, bound.addr));
                    }
                    Err(e) => {
                        tracing::error!("cannot listen on {addr} for {worker}: {e}");
                        let error = format!("the master cannot listen on {addr}: {e}");
                        slot.send(&ToWorker::ListenFailed { request, error }, None);
                    }
                }
            }
            Inbound::Message(ToMaster::Ready) => {
                if slot.state == State::Online {
                    slot.state = State::Ready;
                }
                slot.was_ready = true;
                self.ever_ready = true;
                tracing::debug!("{worker} is ready");
                self.on_ready(key);
            }
            Inbound::Message(ToMaster::Heartbeat) => {
                slot.last_heartbeat = std::time::Instant::now();
            }
            Inbound::Message(ToMaster::GoingDown { reason }) => {
                slot.going_down = Some(reason.clone());
                if slot.retiring || self.stopping.is_some() {
                    return;
                }
                slot.state = State::Draining;
                if !slot.was_ready && !self.ever_ready {
                    self.fail_start_up(&reason);
                    return;
                }
                tracing::warn!("{worker} is going down: {reason}");
                self.emit(LifecycleEvent::Failing { worker, reason });
            }
            Inbound::Broken(reason) => self.drop_worker(key, &reason),
            Inbound::Closed => self.disconnect(key),
            Inbound::Exited(reason) => self.on_exit(key, reason),
        }
    }

    fn on_exit(&mut self, key: Key, reason: ExitReason) {
        self.disconnect(key);
        let Some(slot) = self.table.remove(key) else {
            return;
        };
        let worker = slot.worker();
        let requested = slot.retiring;
        if requested {
            tracing::debug!("{worker} stopped ({reason})");
        } else {
            tracing::warn!("{worker} died unexpectedly ({reason})");
            if !slot.was_ready && !self.ever_ready && self.stopping.is_none() {
                let why = slot
                    .going_down
                    .unwrap_or_else(|| format!("the worker died ({reason})"));
                self.fail_start_up(&why);
            }
        }
        if let Some(roll) = &mut self.roll {
            if roll.successor_lost(key) {
                tracing::error!(
                    "rolling restart stopped: the new {worker} exited ({reason}) before it \
                     was ready; the old workers keep serving"
                );
                self.roll = None;
            }
        }
        self.emit(LifecycleEvent::Exit {
            worker,
            reason,
            requested,
        });
    }

    /// No worker ever became ready and one failed: the app cannot start. Stop instead
    /// of respawning it forever.
    fn fail_start_up(&mut self, reason: &str) {
        tracing::error!("failed to start app: {reason}");
        tracing::error!("no worker ever became ready; stopping the cluster");
        self.begin_stop(1);
    }

    /// The worker broke the protocol: it is killed (its exit follows as an event).
    /// Never the master's problem beyond that.
    fn drop_worker(&mut self, key: Key, reason: &str) {
        let Some(slot) = self.table.get_mut(key) else {
            return;
        };
        tracing::error!("{} {reason}; dropping it", slot.worker());
        spawn::signal(slot.pid, Signal::SIGKILL);
        self.disconnect(key);
    }

    fn disconnect(&mut self, key: Key) {
        let Some(slot) = self.table.get_mut(key) else {
            return;
        };
        if !slot.disconnected {
            slot.disconnected = true;
            let worker = slot.worker();
            self.emit(LifecycleEvent::Disconnect(worker));
        }
    }

    fn on_command(&mut self, command: Command) {
        if self.stopping.is_some() {
            if let Command::Shutdown { .. } = command {
                return;
            }
            tracing::debug!("ignoring {command:?}: the cluster is stopping");
            return;
        }
        match command {
            Command::Respawn { id, after } => self.schedule_respawn(id, after),
            Command::Replace { worker, after } => {
                let key = Key {
                    id: worker.id,
                    generation: worker.generation,
                };
                let Some(slot) = self.table.get_mut(key) else {
                    return;
                };
                if slot.retiring {
                    return;
                }
                slot.retire();
                self.schedule_respawn(worker.id, after);
            }
            Command::RollingRestart => self.start_roll(),
            Command::Scale { count } => self.scale(count),
            Command::Shutdown { code } => self.begin_stop(code),
        }
    }

    fn schedule_respawn(&mut self, id: WorkerId, after: std::time::Duration) {
        if self.pending_respawns.contains(&id) {
            return;
        }
        if after.is_zero() {
            if self.table.current(id).is_none() && self.is_desired(id) {
                self.spawn(id);
            }
            return;
        }
        self.pending_respawns.push(id);
        let due = self.due.clone();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            let _ = due.send(id);
        });
    }

    fn on_respawn_due(&mut self, id: WorkerId) {
        self.pending_respawns.retain(|pending| *pending != id);
        if self.stopping.is_none() && self.table.current(id).is_none() && self.is_desired(id) {
            self.spawn(id);
        }
    }

    /// Slot `id` is within the desired worker count.
    fn is_desired(&self, id: WorkerId) -> bool {
        (id.0 as usize) <= self.master.desired_workers()
    }

    fn scale(&mut self, count: usize) {
        let count = count.max(1);
        self.master.set_desired_workers(count);
        let occupied = self.table.occupied();
        for id in (1..=count).map(|id| WorkerId(id as u32)) {
            if !occupied.contains(&id) && !self.pending_respawns.contains(&id) {
                self.spawn(id);
            }
        }
        let surplus: Vec<Key> = self
            .table
            .iter()
            .filter(|slot| !slot.retiring && (slot.key.id.0 as usize) > count)
            .map(|slot| slot.key)
            .collect();
        for key in surplus {
            if let Some(slot) = self.table.get_mut(key) {
                tracing::info!("scaling down: draining {}", slot.worker());
                slot.retire();
            }
        }
        self.pending_respawns.retain(|id| (id.0 as usize) <= count);
    }

    fn start_roll(&mut self) {
        if self.roll.is_some() {
            tracing::warn!("a rolling restart is already running");
            return;
        }
        let slots = self.table.occupied();
        tracing::info!("rolling restart of {} workers", slots.len());
        self.roll = Some(Roll::new(slots));
        self.next_roll_step();
    }

    /// Starts the successor of the next worker in the roll, or ends the roll.
    fn next_roll_step(&mut self) {
        loop {
            let Some(roll) = &mut self.roll else { return };
            let Some(id) = roll.next_slot() else {
                tracing::info!("rolling restart done");
                self.roll = None;
                return;
            };
            let Some(old) = self.table.current(id).map(|slot| slot.key) else {
                continue;
            };
            let Some(new) = self.spawn(id) else {
                tracing::error!(
                    "rolling restart stopped: cannot start a successor for worker {id}"
                );
                self.roll = None;
                return;
            };
            if let Some(roll) = &mut self.roll {
                roll.await_successor(old, new);
            }
            return;
        }
    }

    fn on_ready(&mut self, key: Key) {
        let Some(old) = self
            .roll
            .as_mut()
            .and_then(|roll| roll.successor_ready(key))
        else {
            return;
        };
        if let Some(slot) = self.table.get_mut(old) {
            tracing::info!("rolling restart: {} replaced; draining it", slot.worker());
            slot.retire();
        }
        self.next_roll_step();
    }

    fn on_roll_timeout(&mut self) {
        let Some(roll) = self.roll.take() else { return };
        if let Some(new) = roll.successor() {
            if let Some(slot) = self.table.get_mut(new) {
                tracing::error!(
                    "rolling restart stopped: {} did not become ready within {:?}; the old \
                     workers keep serving",
                    slot.worker(),
                    super::roll::READY_TIMEOUT
                );
                slot.retiring = true;
                spawn::signal(slot.pid, Signal::SIGKILL);
            }
        }
    }

    fn on_stop_signal(&mut self, name: &str) {
        if self.stopping.is_some() {
            tracing::warn!("{name} again: killing every worker now");
            for slot in self.table.iter_mut() {
                spawn::signal(slot.pid, Signal::SIGKILL);
            }
            return;
        }
        tracing::info!("{name}: stopping {} workers gracefully", self.table.len());
        self.begin_stop(0);
    }

    fn begin_stop(&mut self, code: u8) {
        if self.stopping.is_some() {
            return;
        }
        let timeout = self.master.drain_timeout();
        self.stopping = Some(Stopping {
            code,
            deadline: Some(Instant::now() + timeout),
        });
        self.pending_respawns.clear();
        self.roll = None;
        for slot in self.table.iter_mut() {
            slot.retire();
        }
    }

    fn on_drain_timeout(&mut self) {
        let timeout = self.master.drain_timeout();
        for slot in self.table.iter_mut() {
            tracing::warn!(
                "{} did not stop within {timeout:?}; killing it",
                slot.worker()
            );
            spawn::signal(slot.pid, Signal::SIGKILL);
        }
        if let Some(stop) = &mut self.stopping {
            stop.deadline = None;
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

    fn emit(&self, event: LifecycleEvent) {
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
