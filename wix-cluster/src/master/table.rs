//! The worker table: every live worker process, by slot and generation. A slot (worker
//! id) normally holds one process; during a rolling restart or a replacement it briefly
//! holds the retiring one and its successor.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use crate::WorkerState;
use crate::event::{WorkerKey, WorkerRef};
use crate::ipc::Outbox;
use crate::protocol::ToWorker;
use crate::{WorkerId, WorkerInfo};

/// Where a slot's process is in its life, as the master drives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Life {
    /// Spawned; it has not said hello yet.
    Starting,
    /// It said hello; its app is starting.
    Online,
    /// Its app holds a listener.
    Ready,
    /// It announced it is going down (the master did not ask): it drains, and still
    /// counts as the slot's worker until its exit.
    Failing {
        /// It was ready before.
        was_ready: bool,
    },
    /// The master asked it to stop or replaced it: its exit is expected and it no
    /// longer counts as the slot's worker.
    Retiring {
        /// What it is seen as: draining, or the step it was at when the master killed
        /// it without a drain (a successor not ready in time).
        seen_as: WorkerState,
    },
}

impl Life {
    /// The state plugins and the management app see.
    pub(crate) fn state(self) -> WorkerState {
        match self {
            Life::Starting => WorkerState::Starting,
            Life::Online => WorkerState::Online,
            Life::Ready => WorkerState::Ready,
            Life::Failing { .. } => WorkerState::Draining,
            Life::Retiring { seen_as } => seen_as,
        }
    }

    /// Whether its exit is expected (see [`Life::Retiring`]).
    pub(crate) fn is_retiring(self) -> bool {
        matches!(self, Life::Retiring { .. })
    }

    /// Whether it has been ready, as the slot's worker (a retiring one no longer is).
    pub(crate) fn was_ready(self) -> bool {
        matches!(self, Life::Ready | Life::Failing { was_ready: true })
    }
}

pub(crate) struct Slot {
    pub(crate) key: WorkerKey,
    pub(crate) pid: u32,
    life: Life,
    /// The channel closed (or the master dropped the worker).
    pub(crate) disconnected: bool,
    /// What the worker said when it announced it was going down (kept whatever its
    /// life: its exit's cause quotes it).
    pub(crate) going_down: Option<String>,
    pub(crate) last_heartbeat: Instant,
    pub(crate) started_at: SystemTime,
    /// Requests served, as of the last heartbeat.
    pub(crate) requests: u64,
    /// Failed accepts (descriptors, memory), as of the last heartbeat.
    pub(crate) accept_errors: u64,
    /// Open connections by kind, as of the last heartbeat.
    pub(crate) connections: crate::OpenConnections,
    /// The totals of the last heartbeat, and how busy it was since the one before.
    last_load: Option<crate::busy::Load>,
    load: Option<crate::WorkerLoad>,
    /// Since when its channel's backlog has been over [`crate::ipc::BACKLOG_STALL`].
    pub(crate) backlog_since: Option<Instant>,
    /// The master sent it SIGABRT (it stalled).
    pub(crate) sent_abort: bool,
    /// Why it was asked to drain (told to it with the shutdown).
    stop_why: crate::StopReason,
    /// When it was told to drain.
    pub(crate) draining_since: Option<Instant>,
    /// When it was told its drain is over (`max_draining`).
    pub(crate) hurried_at: Option<Instant>,
    /// Why the master sent it SIGKILL, when it did: its exit's cause says so.
    pub(crate) sent_kill: Option<String>,
    out: Outbox,
}

impl Slot {
    pub(crate) fn new(key: WorkerKey, pid: u32, out: Outbox) -> Slot {
        Slot {
            key,
            pid,
            life: Life::Starting,
            disconnected: false,
            going_down: None,
            last_heartbeat: Instant::now(),
            started_at: SystemTime::now(),
            requests: 0,
            accept_errors: 0,
            connections: crate::OpenConnections::default(),
            last_load: None,
            load: None,
            backlog_since: None,
            sent_abort: false,
            stop_why: crate::StopReason::Restart,
            draining_since: None,
            hurried_at: None,
            sent_kill: None,
            out,
        }
    }

    pub(crate) fn worker(&self) -> WorkerRef {
        self.key.with_pid(self.pid)
    }

    pub(crate) fn info(&self) -> WorkerInfo {
        WorkerInfo {
            worker: self.worker(),
            state: self.life.state(),
            started_at: self.started_at,
            since_heartbeat: self.last_heartbeat.elapsed(),
            requests: self.requests,
            accept_errors: self.accept_errors,
            connections: self.connections,
            load: self.load,
        }
    }

    /// A heartbeat's load totals: the busy share since the previous heartbeat. Totals
    /// that go backwards or a clock that does not move are ignored (a worker's garbage
    /// cannot make a share outside 0..=1).
    pub(crate) fn heard_load(&mut self, load: crate::busy::Load) {
        if let Some(last) = self.last_load {
            let wall = load.at_ms.saturating_sub(last.at_ms);
            if wall > 0 && load.busy_ms >= last.busy_ms && load.lag_ms >= last.lag_ms {
                let share = |ms: u64| (ms as f64 / wall as f64).clamp(0.0, 1.0);
                self.load = Some(crate::WorkerLoad {
                    busy: share(load.busy_ms - last.busy_ms),
                    lag: share(load.lag_ms - last.lag_ms),
                    peak: load.peak,
                    together: load.together,
                });
            }
        }
        self.last_load = Some(load);
    }

    /// The worker's outgoing queue (for the exchange hub).
    pub(crate) fn outbox(&self) -> Outbox {
        self.out.clone()
    }

    /// Queues `msg` for the worker, with `fd` passed alongside.
    pub(crate) fn send(&self, msg: &ToWorker, fd: Option<Arc<OwnedFd>>) {
        let sent = match fd {
            Some(fd) => self.out.send_with_fd(msg, fd),
            None => self.out.send(msg),
        };
        if let Err(e) = sent {
            tracing::error!(
                "cannot send a {} message to {}: {e}",
                msg.kind(),
                self.worker()
            );
        }
    }

    /// Sends the worker SIGKILL, remembering `why` for its exit's cause.
    pub(crate) fn kill(&mut self, why: impl Into<String>) {
        if self.sent_kill.is_none() {
            self.sent_kill = Some(why.into());
        }
        super::spawn::signal(self.pid, nix::sys::signal::Signal::SIGKILL);
    }

    /// Sends the worker SIGABRT (it stalled), remembered for its exit's cause.
    pub(crate) fn abort(&mut self) {
        self.sent_abort = true;
        super::spawn::signal(self.pid, nix::sys::signal::Signal::SIGABRT);
    }

    /// Where it is in its life.
    pub(crate) fn life(&self) -> Life {
        self.life
    }

    /// Whether its exit is expected (see [`Life::Retiring`]).
    pub(crate) fn is_retiring(&self) -> bool {
        self.life.is_retiring()
    }

    /// Marks the worker as retiring and asks it to drain; one that has not said hello
    /// yet is asked once it does ([`Slot::greeted`]): its first message must still be
    /// its hello, and nothing but the welcome may reach it before.
    pub(crate) fn retire(&mut self, why: crate::StopReason) {
        self.stop_why = why;
        match self.life {
            Life::Retiring { .. } => {}
            Life::Starting => {
                self.life = Life::Retiring {
                    seen_as: WorkerState::Starting,
                };
            }
            _ => {
                self.life = Life::Retiring {
                    seen_as: WorkerState::Draining,
                };
                self.tell_to_drain();
            }
        }
    }

    fn tell_to_drain(&mut self) {
        self.send(&ToWorker::Shutdown { why: self.stop_why }, None);
        self.draining_since = Some(Instant::now());
    }

    /// Tells a draining worker its drain is over: it closes what is left and exits.
    pub(crate) fn hurry(&mut self) {
        self.send(&ToWorker::Hurry, None);
        self.hurried_at = Some(Instant::now());
    }

    /// Marks the worker as retiring without a drain, and sends it SIGKILL (see
    /// [`Slot::kill`]).
    pub(crate) fn kill_retiring(&mut self, why: impl Into<String>) {
        if !self.is_retiring() {
            self.life = Life::Retiring {
                seen_as: self.life.state(),
            };
        }
        self.kill(why);
    }

    /// It said hello: online, or (retired before that) told to drain now.
    pub(crate) fn greeted(&mut self) {
        self.life = match self.life {
            Life::Retiring {
                seen_as: WorkerState::Starting,
            } => {
                self.tell_to_drain();
                Life::Retiring {
                    seen_as: WorkerState::Draining,
                }
            }
            _ => Life::Online,
        };
    }

    /// It said it is ready (it holds a listener).
    pub(crate) fn became_ready(&mut self) {
        self.life = match self.life {
            Life::Online | Life::Ready => Life::Ready,
            Life::Failing { .. } => Life::Failing { was_ready: true },
            Life::Retiring {
                seen_as: WorkerState::Online,
            } => Life::Retiring {
                seen_as: WorkerState::Ready,
            },
            other => other,
        };
    }

    /// It announced it is going down, and the master did not ask: it drains.
    pub(crate) fn failing(&mut self) {
        self.life = Life::Failing {
            was_ready: self.life.was_ready(),
        };
    }
}

#[derive(Default)]
pub(crate) struct WorkerTable {
    procs: BTreeMap<WorkerKey, Slot>,
    generations: HashMap<WorkerId, u32>,
}

impl WorkerTable {
    /// The key for the next process in slot `id`.
    pub(crate) fn next_key(&mut self, id: WorkerId) -> WorkerKey {
        let generation = self.generations.entry(id).or_insert(0);
        let key = WorkerKey {
            id,
            generation: *generation,
        };
        *generation += 1;
        key
    }

    /// Gives back `key`, the latest from [`WorkerTable::next_key`], when no process
    /// could be started with it: generations count processes.
    pub(crate) fn forget_key(&mut self, key: WorkerKey) {
        if let Some(generation) = self.generations.get_mut(&key.id) {
            if *generation == key.generation + 1 {
                *generation = key.generation;
            }
        }
    }

    pub(crate) fn insert(&mut self, slot: Slot) {
        self.procs.insert(slot.key, slot);
    }

    /// The process `key`, while it is in the table.
    pub(crate) fn get(&self, key: WorkerKey) -> Option<&Slot> {
        self.procs.get(&key)
    }

    pub(crate) fn get_mut(&mut self, key: WorkerKey) -> Option<&mut Slot> {
        self.procs.get_mut(&key)
    }

    pub(crate) fn remove(&mut self, key: WorkerKey) -> Option<Slot> {
        self.procs.remove(&key)
    }

    /// The newest non-retiring process of slot `id`.
    pub(crate) fn current(&self, id: WorkerId) -> Option<&Slot> {
        self.procs
            .range(WorkerKey::all_of(id))
            .rev()
            .map(|(_, slot)| slot)
            .find(|slot| !slot.is_retiring())
    }

    /// Slots with a non-retiring process.
    pub(crate) fn occupied(&self) -> BTreeSet<WorkerId> {
        self.procs
            .values()
            .filter(|slot| !slot.is_retiring())
            .map(|slot| slot.key.id)
            .collect()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Slot> {
        self.procs.values()
    }

    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = &mut Slot> {
        self.procs.values_mut()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.procs.is_empty()
    }

    pub(crate) fn len(&self) -> usize {
        self.procs.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipc::{FrameReader, into_stream, socketpair};

    /// A slot whose outbox writes to the returned reader. Its pid is one no signal can
    /// reach (`spawn::signal` skips it), so that `kill` is harmless here.
    fn slot() -> (Slot, FrameReader) {
        let (ours, theirs) = socketpair().expect("socketpair");
        let (out, writer) = Outbox::new(into_stream(ours).expect("stream"));
        tokio::spawn(writer.run());
        let key = WorkerKey {
            id: WorkerId(1),
            generation: 0,
        };
        let slot = Slot::new(key, u32::MAX, out);
        (slot, FrameReader::new(into_stream(theirs).expect("stream")))
    }

    #[tokio::test]
    async fn a_worker_is_ready_after_its_hello_and_a_listener_and_stays_so_when_failing() {
        let (mut slot, _reader) = slot();
        assert_eq!(slot.life(), Life::Starting);
        slot.greeted();
        assert_eq!(slot.life(), Life::Online);
        assert!(!slot.life().was_ready());
        slot.became_ready();
        assert_eq!(slot.life(), Life::Ready);
        slot.failing();
        assert_eq!(slot.life(), Life::Failing { was_ready: true });
        assert_eq!(slot.info().state, WorkerState::Draining);
        assert!(!slot.is_retiring());
    }

    #[tokio::test]
    async fn a_worker_failing_before_it_was_ready_is_ready_once_it_says_so() {
        let (mut slot, _reader) = slot();
        slot.greeted();
        slot.failing();
        assert_eq!(slot.life(), Life::Failing { was_ready: false });
        slot.became_ready();
        assert_eq!(slot.life(), Life::Failing { was_ready: true });
    }

    #[tokio::test]
    async fn a_retired_worker_is_told_to_drain_once_and_no_longer_counts_as_ready() {
        let (mut slot, mut reader) = slot();
        slot.greeted();
        slot.became_ready();
        slot.retire(crate::StopReason::Restart);
        slot.retire(crate::StopReason::Restart);
        assert!(slot.is_retiring());
        assert!(!slot.life().was_ready());
        assert_eq!(slot.info().state, WorkerState::Draining);
        let told = reader.recv::<ToWorker>().await.expect("a frame");
        assert!(matches!(told, Some(ToWorker::Shutdown { .. })), "{told:?}");
        let marker = ToWorker::ListenFailed {
            request: 7,
            error: "marker".to_owned(),
        };
        slot.send(&marker, None);
        // The frame after the Shutdown is the one sent by hand: retire sent only one.
        let next = reader.recv::<ToWorker>().await.expect("a frame");
        assert!(
            matches!(next, Some(ToWorker::ListenFailed { request: 7, .. })),
            "{next:?}"
        );
    }

    #[tokio::test]
    async fn a_worker_retired_before_its_hello_awaits_it_then_is_told_to_drain() {
        let (mut slot, mut reader) = slot();
        slot.retire(crate::StopReason::Restart);
        assert!(slot.is_retiring());
        // Still waiting for its hello: the loop takes its first message as one.
        assert_eq!(slot.life().state(), WorkerState::Starting);
        slot.greeted();
        assert_eq!(
            slot.life(),
            Life::Retiring {
                seen_as: WorkerState::Draining
            }
        );
        // The first frame it gets is the Shutdown sent after its hello, not one before.
        let marker = ToWorker::ListenFailed {
            request: 7,
            error: "marker".to_owned(),
        };
        slot.send(&marker, None);
        let told = reader.recv::<ToWorker>().await.expect("a frame");
        assert!(matches!(told, Some(ToWorker::Shutdown { .. })), "{told:?}");
        let next = reader.recv::<ToWorker>().await.expect("a frame");
        assert!(
            matches!(next, Some(ToWorker::ListenFailed { request: 7, .. })),
            "{next:?}"
        );
    }

    #[tokio::test]
    async fn a_successor_killed_before_its_hello_is_seen_as_starting_then_told_to_drain() {
        let (mut slot, mut reader) = slot();
        slot.kill_retiring("as a successor not ready in time");
        assert!(slot.is_retiring());
        assert_eq!(slot.info().state, WorkerState::Starting);
        assert_eq!(
            slot.sent_kill.as_deref(),
            Some("as a successor not ready in time")
        );
        slot.greeted();
        assert_eq!(
            slot.life(),
            Life::Retiring {
                seen_as: WorkerState::Draining
            }
        );
        let told = reader.recv::<ToWorker>().await.expect("a frame");
        assert!(matches!(told, Some(ToWorker::Shutdown { .. })), "{told:?}");
    }
}
