//! The supervision loop: one task that owns the worker table and reacts to worker
//! messages and exits, plugin commands, signals and timers.

use std::panic::AssertUnwindSafe;
use std::process::ExitCode;

use nix::sys::signal::Signal;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::listeners::Listeners;
use super::spawn::{self, Inbound, Key, Spawner};
use super::table::{Slot, State, WorkerTable};
use super::{Command, Master};
use crate::WorkerId;
use crate::config::Config;
use crate::event::LifecycleEvent;
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
    let (mut sigterm, mut sigint) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(term), Ok(int)) => (term, int),
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!("cannot watch SIGTERM/SIGINT: {e}");
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
    };
    tracing::info!("master started; spawning {} workers", config.workers);
    for id in 1..=config.workers {
        sup.spawn(WorkerId(id as u32));
    }

    loop {
        let deadline = sup.stopping.as_ref().and_then(|stop| stop.deadline);
        tokio::select! {
            Some((key, inbound)) = inbox.recv() => sup.on_inbound(key, inbound),
            Some(command) = commands.recv() => sup.on_command(command),
            Some(id) = due.recv() => sup.on_respawn_due(id),
            _ = sigterm.recv() => sup.on_stop_signal("SIGTERM"),
            _ = sigint.recv() => sup.on_stop_signal("SIGINT"),
            _ = sleep_until(deadline), if deadline.is_some() => sup.on_drain_timeout(),
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
}

impl Supervisor {
    fn spawn(&mut self, id: WorkerId) {
        let key = self.table.next_key(id);
        match self.spawner.spawn(key) {
            Ok(spawned) => {
                let slot = Slot::new(key, spawned.pid, spawned.out);
                let worker = slot.worker();
                self.table.insert(slot);
                tracing::debug!("forked {worker}");
                self.emit(LifecycleEvent::Fork(worker));
            }
            Err(e) => tracing::error!("cannot spawn worker {id}: {e}"),
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
                slot.send(
                    &ToWorker::Welcome {
                        version: PROTOCOL_VERSION,
                    },
                    None,
                );
                slot.state = State::Online;
                self.emit(LifecycleEvent::Online(worker));
            }
            Inbound::Message(_) if slot.state == State::Starting => {
                self.drop_worker(key, "spoke before its hello");
            }
            Inbound::Message(ToMaster::Hello { .. }) => self.drop_worker(key, "said hello twice"),
            Inbound::Message(ToMaster::Listen { request, addr }) => {
                match self.listeners.get_or_bind(addr) {
                    Ok(bound) => {
                        slot.send(
                            &ToWorker::Listener {
                                request,
                                addr: bound.addr,
                            },
                            Some(bound.fd),
                        );
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
                tracing::debug!("{worker} is ready");
            }
            Inbound::Message(ToMaster::Heartbeat) => {
                slot.last_heartbeat = std::time::Instant::now()
            }
            Inbound::Broken(reason) => self.drop_worker(key, &reason),
            Inbound::Closed => self.disconnect(key),
            Inbound::Exited(reason) => {
                self.disconnect(key);
                let Some(slot) = self.table.remove(key) else {
                    return;
                };
                let requested = slot.stop_requested;
                if requested {
                    tracing::debug!("{worker} stopped ({reason})");
                } else {
                    tracing::warn!("{worker} died unexpectedly ({reason})");
                }
                self.emit(LifecycleEvent::Exit {
                    worker,
                    reason,
                    requested,
                });
            }
        }
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
        match command {
            Command::Respawn { id, after } => {
                if self.stopping.is_some() || self.pending_respawns.contains(&id) {
                    return;
                }
                self.pending_respawns.push(id);
                let due = self.due.clone();
                tokio::spawn(async move {
                    if !after.is_zero() {
                        tokio::time::sleep(after).await;
                    }
                    let _ = due.send(id);
                });
            }
            Command::Shutdown { code } => self.begin_stop(code),
        }
    }

    fn on_respawn_due(&mut self, id: WorkerId) {
        self.pending_respawns.retain(|pending| *pending != id);
        if self.stopping.is_none() && !self.table.is_occupied(id) {
            self.spawn(id);
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
        for slot in self.table.iter_mut() {
            slot.stop_requested = true;
            slot.state = State::Stopping;
            slot.send(&ToWorker::Shutdown, None);
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
