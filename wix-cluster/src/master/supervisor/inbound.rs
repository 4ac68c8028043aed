//! What workers say, and how they end.

use super::{Supervisor, Timer};

/// How long the master waits, when a worker says a signal (SIGTERM, SIGQUIT) is making
/// it go down, for the same signal to reach the master itself before it replaces that
/// worker: `systemctl kill` signals every process of the control group (workers lead
/// process groups of their own, so `kill -TERM -<pgid>` reaches the master alone), which
/// must be one stop of the cluster, not a round of replacements.
const SIGNALLED_GRACE: std::time::Duration = std::time::Duration::from_millis(500);
use crate::WorkerState;
use crate::event::WorkerKey;
use crate::event::{ExitReason, LifecycleEvent};
use crate::master::spawn::Inbound;
use crate::protocol::{ListenOn, PROTOCOL_VERSION, ToMaster, ToWorker};

/// How a worker's drain ended: connections given up on at its deadline (`upgraded` of
/// them upgraded), and WebSockets closed then because their client stayed silent.
struct Drained {
    left: u32,
    upgraded: u32,
    silent: u32,
}

impl Supervisor {
    /// What worker `key`'s tasks report: a message, a broken or closed channel, its exit.
    pub(super) fn on_inbound(&mut self, key: WorkerKey, inbound: Inbound) {
        match inbound {
            Inbound::Message(msg) => self.on_message(key, msg),
            Inbound::Broken(reason) => self.drop_worker(key, &reason),
            Inbound::Closed => self.disconnect(key),
            Inbound::Exited(reason) => self.on_exit(key, reason),
        }
    }

    /// A message of worker `key`: the hello first and once, then any other.
    fn on_message(&mut self, key: WorkerKey, msg: ToMaster) {
        let Some(slot) = self.table.get(key) else {
            return;
        };
        if slot.life().state() == WorkerState::Starting {
            match msg {
                ToMaster::Hello { version, pid } => self.said_hello(key, version, pid),
                _ => self.drop_worker(key, "spoke before its hello"),
            }
            return;
        }
        match msg {
            ToMaster::Hello { .. } => self.drop_worker(key, "said hello twice"),
            ToMaster::Listen { request, on } => self.asked_to_listen(key, request, on),
            ToMaster::Ready => self.said_ready(key),
            ToMaster::Heartbeat {
                requests,
                accept_errors,
                connections,
                load,
            } => {
                if let Some(slot) = self.table.get_mut(key) {
                    slot.last_heartbeat = std::time::Instant::now();
                    slot.requests = requests;
                    slot.accept_errors = accept_errors;
                    slot.connections = connections;
                    slot.heard_load(load);
                }
            }
            ToMaster::Drained {
                left,
                upgraded,
                silent,
                took_ms,
            } => self.said_drained(
                key,
                Drained {
                    left,
                    upgraded,
                    silent,
                },
                took_ms,
            ),
            // The reader task hands these to the exchange hub directly once the worker
            // has said hello; before that they were caught above.
            ToMaster::Exchange { .. } | ToMaster::Request { .. } => {}
            ToMaster::Recycle { reason } => self.recycle(key, reason),
            ToMaster::GoingDown { reason, signalled } => {
                self.said_going_down(key, reason, signalled);
            }
        }
    }

    /// How a worker's drain ended, for the event log.
    fn said_drained(&mut self, key: WorkerKey, ended: Drained, took_ms: u64) {
        let Some(slot) = self.table.get_mut(key) else {
            return;
        };
        let worker = slot.worker();
        let Drained {
            left,
            upgraded,
            silent,
        } = ended;
        let silent = if silent > 0 {
            format!(
                "; {silent} WebSockets closed at the drain's deadline, their client silent \
                 after the close frame"
            )
        } else {
            String::new()
        };
        let step = if slot.hurried_at.is_some() {
            format!(
                "drain cut short after {took_ms} ms: closed the {left} connections left \
                 ({upgraded} upgraded){silent}"
            )
        } else if left == 0 {
            format!("drained in {took_ms} ms: every connection closed{silent}")
        } else {
            format!(
                "drain timed out after {took_ms} ms: closed the {left} connections left \
                 ({upgraded} upgraded){silent}"
            )
        };
        self.master.event_log().record("drain", Some(worker), step);
    }

    /// The handshake: a hello with the right protocol and pid is welcomed with the
    /// app-scoped data, and the worker is online.
    fn said_hello(&mut self, key: WorkerKey, version: u32, pid: u32) {
        let Some(slot) = self.table.get_mut(key) else {
            return;
        };
        if version != PROTOCOL_VERSION || pid != slot.pid {
            let reason = format!("bad hello (protocol {version}, pid {pid})");
            self.drop_worker(key, &reason);
            return;
        }
        let drain_timeout_ms =
            u64::try_from(self.master.drain_timeout().as_millis()).unwrap_or(u64::MAX);
        let welcome = |data| {
            let welcome = ToWorker::Welcome {
                version: PROTOCOL_VERSION,
                drain_timeout_ms,
                data,
            };
            slot.send(&welcome, None);
        };
        self.hub.attach_worker(key, slot.outbox(), welcome);
        // Stopped before it was even online: it is told now.
        slot.greeted();
        let worker = slot.worker();
        self.emit(LifecycleEvent::Online(worker));
    }

    /// The worker asks for the shared listener `on` (request `request`).
    fn asked_to_listen(&mut self, key: WorkerKey, request: u64, on: ListenOn) {
        let Some(slot) = self.table.get(key) else {
            return;
        };
        let worker = slot.worker();
        match self.listeners.get(&on) {
            Ok(bound) => {
                self.master.add_app_addr(bound.addr);
                self.master.add_app_listener(&bound.fd);
                let msg = ToWorker::Listener {
                    request,
                    addr: bound.addr,
                };
                slot.send(&msg, Some(bound.fd));
                self.emit(LifecycleEvent::Listening(worker, bound.addr));
            }
            Err(e) => {
                tracing::error!("cannot listen on {on} for {worker}: {e}");
                let error = format!("the master cannot listen on {on}: {e}");
                slot.send(&ToWorker::ListenFailed { request, error }, None);
            }
        }
    }

    /// The worker's app holds a listener.
    fn said_ready(&mut self, key: WorkerKey) {
        let Some(slot) = self.table.get_mut(key) else {
            return;
        };
        slot.became_ready();
        self.spawner.ready(key);
        self.ever_ready = true;
        tracing::debug!("{} is ready", slot.worker());
        self.time_ready(key);
        self.on_ready(key);
    }

    /// The worker announced it is going down; unless the master asked or the cluster
    /// is stopping, it is failing (after [`SIGNALLED_GRACE`] when a signal made it).
    fn said_going_down(&mut self, key: WorkerKey, reason: String, signalled: bool) {
        let Some(slot) = self.table.get_mut(key) else {
            return;
        };
        slot.going_down = Some(reason);
        if slot.is_retiring() || self.stopping.is_some() {
            return;
        }
        slot.failing();
        if signalled {
            // A signal sent to every process reaches this master too, a
            // moment later: a stop then, not a worker to replace.
            self.schedule(SIGNALLED_GRACE, Timer::GoingDown(key));
            return;
        }
        self.on_going_down(key);
    }

    /// Worker `key` announced it is going down (after [`SIGNALLED_GRACE`] when a signal
    /// made it): the start-up failed, or it is failing and gets replaced.
    pub(super) fn on_going_down(&mut self, key: WorkerKey) {
        let Some(slot) = self.table.get_mut(key) else {
            return;
        };
        if slot.is_retiring() || self.stopping.is_some() {
            return;
        }
        let worker = slot.worker();
        let reason = slot.going_down.clone().unwrap_or_default();
        if !slot.life().was_ready() && !self.ever_ready {
            self.fail_start_up(&reason);
            return;
        }
        tracing::warn!("{worker} is going down: {reason}");
        self.emit(LifecycleEvent::Failing { worker, reason });
    }

    fn on_exit(&mut self, key: WorkerKey, reason: ExitReason) {
        self.disconnect(key);
        self.spawner.ended(key);
        let Some(slot) = self.table.remove(key) else {
            return;
        };
        let worker = slot.worker();
        self.groups.end(slot.pid, self.master.drain_timeout());
        self.hub.detach_worker(key);
        crate::metrics::ended(key.id, key.generation);
        let requested = slot.is_retiring();
        if requested {
            tracing::debug!("{worker} stopped ({reason})");
        } else {
            tracing::warn!("{worker} died unexpectedly ({reason})");
            self.time_death(key.id);
            if !slot.life().was_ready() && !self.ever_ready && self.stopping.is_none() {
                let why = slot
                    .going_down
                    .clone()
                    .unwrap_or_else(|| format!("the worker died ({reason})"));
                self.fail_start_up(&why);
            }
        }
        self.on_handover_exit(key, &reason);
        let cause = crate::master::exit_cause::describe(&crate::master::exit_cause::Ending {
            reason,
            requested,
            sent_abort: slot.sent_abort,
            sent_kill: slot.sent_kill.as_deref(),
            going_down: slot.going_down.as_deref(),
            oom_kills: self
                .oom
                .kills_for_exit(reason == ExitReason::Signal(9) && slot.sent_kill.is_none()),
        });
        self.emit_with_cause(
            LifecycleEvent::Exit {
                worker,
                reason,
                requested,
            },
            cause,
        );
    }

    /// No worker ever became ready and one failed: the app cannot start. Stop instead
    /// of respawning it forever.
    fn fail_start_up(&mut self, reason: &str) {
        tracing::error!("failed to start app: {reason}");
        tracing::error!("no worker ever became ready; stopping the cluster");
        self.begin_stop(1, crate::StopReason::Stop);
    }

    /// The worker broke the protocol: it is killed (its exit follows as an event).
    /// Never the master's problem beyond that.
    fn drop_worker(&mut self, key: WorkerKey, reason: &str) {
        let Some(slot) = self.table.get_mut(key) else {
            return;
        };
        tracing::error!("{} {reason}; dropping it", slot.worker());
        slot.kill(format!("it {reason}"));
        self.disconnect(key);
    }

    fn disconnect(&mut self, key: WorkerKey) {
        let Some(slot) = self.table.get_mut(key) else {
            return;
        };
        if !slot.disconnected {
            slot.disconnected = true;
            let worker = slot.worker();
            self.emit(LifecycleEvent::Disconnect(worker));
        }
    }
}
