//! The worker table: every live worker process, by slot and generation. A slot (worker
//! id) normally holds one process; during a rolling restart or a replacement it briefly
//! holds the retiring one and its successor.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

pub(crate) use crate::WorkerState as State;
use crate::event::WorkerKey;
use crate::event::WorkerRef;
use crate::ipc::Outbox;
use crate::protocol::ToWorker;
use crate::{WorkerId, WorkerInfo};

pub(crate) struct Slot {
    pub(crate) key: WorkerKey,
    pub(crate) pid: u32,
    pub(crate) state: State,
    /// The master asked this worker to stop or replaced it: its exit is expected and
    /// it no longer counts as the slot's worker.
    pub(crate) retiring: bool,
    /// The channel closed (or the master dropped the worker).
    pub(crate) disconnected: bool,
    /// It reached [`State::Ready`] at some point.
    pub(crate) was_ready: bool,
    /// What the worker said when it announced it was going down.
    pub(crate) going_down: Option<String>,
    pub(crate) last_heartbeat: Instant,
    pub(crate) started_at: SystemTime,
    /// Requests served, as of the last heartbeat.
    pub(crate) requests: u64,
    /// Failed accepts (descriptors, memory), as of the last heartbeat.
    pub(crate) accept_errors: u64,
    /// Since when its channel's backlog has been over [`crate::ipc::BACKLOG_STALL`].
    pub(crate) backlog_since: Option<Instant>,
    /// The master sent it SIGABRT (it stalled).
    pub(crate) sent_abort: bool,
    /// Why the master sent it SIGKILL, when it did: its exit's cause says so.
    pub(crate) sent_kill: Option<String>,
    out: Outbox,
}

impl Slot {
    pub(crate) fn new(key: WorkerKey, pid: u32, out: Outbox) -> Slot {
        Slot {
            key,
            pid,
            state: State::Starting,
            retiring: false,
            disconnected: false,
            was_ready: false,
            going_down: None,
            last_heartbeat: Instant::now(),
            started_at: SystemTime::now(),
            requests: 0,
            accept_errors: 0,
            backlog_since: None,
            sent_abort: false,
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
            state: self.state,
            started_at: self.started_at,
            since_heartbeat: self.last_heartbeat.elapsed(),
            requests: self.requests,
            accept_errors: self.accept_errors,
        }
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

    /// Marks the worker as retiring and asks it to drain.
    pub(crate) fn retire(&mut self) {
        if !self.retiring {
            self.retiring = true;
            self.state = State::Draining;
            self.send(&ToWorker::Shutdown, None);
        }
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
            .find(|slot| !slot.retiring)
    }

    /// Slots with a non-retiring process.
    pub(crate) fn occupied(&self) -> BTreeSet<WorkerId> {
        self.procs
            .values()
            .filter(|slot| !slot.retiring)
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
