//! The worker table: one slot per worker id, holding the process that lives in it.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use tokio::sync::mpsc;

use super::spawn::Key;
use crate::WorkerId;
use crate::event::WorkerRef;
use crate::ipc::{self, Outgoing};
use crate::protocol::ToWorker;

/// Where a worker is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    /// Spawned; no hello yet.
    Starting,
    /// Handshake done.
    Online,
    /// The app holds a listener.
    Ready,
    /// Asked to stop.
    Stopping,
}

pub(crate) struct Slot {
    pub(crate) key: Key,
    pub(crate) pid: u32,
    pub(crate) state: State,
    /// The master asked this worker to stop (its exit is expected).
    pub(crate) stop_requested: bool,
    /// The channel closed (or the master dropped the worker).
    pub(crate) disconnected: bool,
    pub(crate) last_heartbeat: Instant,
    out: mpsc::UnboundedSender<Outgoing>,
}

impl Slot {
    pub(crate) fn new(key: Key, pid: u32, out: mpsc::UnboundedSender<Outgoing>) -> Slot {
        Slot {
            key,
            pid,
            state: State::Starting,
            stop_requested: false,
            disconnected: false,
            last_heartbeat: Instant::now(),
            out,
        }
    }

    pub(crate) fn worker(&self) -> WorkerRef {
        WorkerRef {
            id: self.key.id,
            generation: self.key.generation,
            pid: self.pid,
        }
    }

    /// Queues `msg` for the worker, with `fd` passed alongside.
    pub(crate) fn send(&self, msg: &ToWorker, fd: Option<std::sync::Arc<std::os::fd::OwnedFd>>) {
        let mut bytes = Vec::new();
        match ipc::encode(msg, &mut bytes) {
            Ok(()) => {
                // A closed queue means the worker is going; its exit is on its way.
                let _ = self.out.send(Outgoing { bytes, fd });
            }
            Err(e) => tracing::error!("cannot send {msg:?} to {}: {e}", self.worker()),
        }
    }
}

#[derive(Default)]
pub(crate) struct WorkerTable {
    slots: BTreeMap<WorkerId, Slot>,
    generations: HashMap<WorkerId, u32>,
}

impl WorkerTable {
    /// The key for the next process in slot `id`.
    pub(crate) fn next_key(&mut self, id: WorkerId) -> Key {
        let generation = self.generations.entry(id).or_insert(0);
        let key = Key {
            id,
            generation: *generation,
        };
        *generation += 1;
        key
    }

    pub(crate) fn insert(&mut self, slot: Slot) {
        self.slots.insert(slot.key.id, slot);
    }

    pub(crate) fn is_occupied(&self, id: WorkerId) -> bool {
        self.slots.contains_key(&id)
    }

    /// The slot for `key`, unless a later process took it over.
    pub(crate) fn get_mut(&mut self, key: Key) -> Option<&mut Slot> {
        self.slots.get_mut(&key.id).filter(|slot| slot.key == key)
    }

    pub(crate) fn remove(&mut self, key: Key) -> Option<Slot> {
        if self.get_mut(key).is_some() {
            self.slots.remove(&key.id)
        } else {
            None
        }
    }

    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = &mut Slot> {
        self.slots.values_mut()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }
}
