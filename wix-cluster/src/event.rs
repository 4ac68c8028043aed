//! Lifecycle events the master emits to plugins.

use std::fmt;
use std::net::SocketAddr;

use crate::WorkerId;

/// One process of one slot: the slot and the generation living in it. What the master
/// knows a worker by before it has a pid, and the part of [`WorkerRef`] that names the
/// process among the slot's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct WorkerKey {
    /// The slot.
    pub(crate) id: WorkerId,
    /// How many processes the slot has had before this one.
    pub(crate) generation: u32,
}

impl WorkerKey {
    /// Every key of slot `id`, oldest generation first (a range of an ordered map).
    pub(crate) fn all_of(id: WorkerId) -> std::ops::RangeInclusive<WorkerKey> {
        WorkerKey { id, generation: 0 }..=WorkerKey {
            id,
            generation: u32::MAX,
        }
    }

    /// The process of this slot and generation, whose pid is `pid`.
    pub(crate) fn with_pid(self, pid: u32) -> WorkerRef {
        WorkerRef {
            id: self.id,
            generation: self.generation,
            pid,
        }
    }
}

/// Which process an event is about: a worker slot, the generation living in it, its pid.
/// Ordered by slot, then generation, then pid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WorkerRef {
    /// The slot, `1..=workers`; kept across respawns.
    pub id: WorkerId,
    /// How many processes this slot has had before this one (0 for the first).
    pub generation: u32,
    /// The worker's process id.
    pub pid: u32,
}

impl fmt::Display for WorkerRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "worker {} (pid {}", self.id, self.pid)?;
        if self.generation > 0 {
            write!(f, ", generation {}", self.generation)?;
        }
        f.write_str(")")
    }
}

/// How a worker process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitReason {
    /// It exited with this code.
    Code(i32),
    /// A signal killed it.
    Signal(i32),
}

impl From<std::process::ExitStatus> for ExitReason {
    fn from(status: std::process::ExitStatus) -> Self {
        use std::os::unix::process::ExitStatusExt;
        match (status.code(), status.signal()) {
            (Some(code), _) => ExitReason::Code(code),
            (None, Some(signal)) => ExitReason::Signal(signal),
            (None, None) => ExitReason::Code(-1),
        }
    }
}

impl fmt::Display for ExitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitReason::Code(code) => write!(f, "exit code {code}"),
            ExitReason::Signal(signal) => match nix::sys::signal::Signal::try_from(*signal) {
                Ok(sig) => write!(f, "signal {}", sig.as_str()),
                Err(_) => write!(f, "signal {signal}"),
            },
        }
    }
}

/// Something that happened to a worker, in the order it happened. Mirrors the events of
/// Node's `cluster` module.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LifecycleEvent {
    /// A worker process was started.
    Fork(WorkerRef),
    /// The worker's runtime is up and completed the handshake with the master.
    Online(WorkerRef),
    /// The worker received the shared listener for `addr` (the bound address).
    Listening(WorkerRef, SocketAddr),
    /// The worker announced that it is going down on its own: its app failed or
    /// panicked, or it got SIGTERM. It drains; `Respawn` replaces it at once.
    Failing {
        /// The worker.
        worker: WorkerRef,
        /// What it said.
        reason: String,
    },
    /// The worker is being replaced gracefully: its successor starts first, then it
    /// drains (a rolling restart, a guard such as `max_requests`, CPU or memory).
    Recycled {
        /// The worker.
        worker: WorkerRef,
        /// Why.
        reason: String,
    },
    /// The worker stopped answering (its heartbeat is late): it is sent SIGABRT, then
    /// SIGKILL, and `Respawn` replaces it.
    Stalled {
        /// The worker.
        worker: WorkerRef,
        /// How long it has been silent, in words.
        reason: String,
    },
    /// The master could not start a process for the slot (the system is short of
    /// processes, memory or descriptors, or the program cannot be executed). `worker`
    /// has pid 0 and the generation the process would have had. When the slot was left
    /// empty (`successor: false`), `Respawn` retries it with the slot's backoff and counts
    /// it toward cyclic death like a death; a successor's failure (a rolling restart's or
    /// a recycle's) is not a death: the slot's worker keeps serving, and the roll or the
    /// recycle stops with the reason.
    SpawnFailed {
        /// The slot (pid 0: there is no process).
        worker: WorkerRef,
        /// The operating system's error, in words.
        error: String,
        /// It was to succeed a live worker of the slot (a rolling restart, a recycle).
        successor: bool,
    },
    /// The worker's channel to the master closed.
    Disconnect(WorkerRef),
    /// The worker process ended.
    Exit {
        /// The worker.
        worker: WorkerRef,
        /// How it ended.
        reason: ExitReason,
        /// Whether its exit was expected: the master asked it to stop (shutdown, scale
        /// down, rolling restart) or it had been replaced after announcing it was going
        /// down. A worker that died on its own, or that the master dropped for
        /// misbehaving, has `false`: that is the case the `Respawn` plugin replaces.
        requested: bool,
    },
}

impl LifecycleEvent {
    /// The worker the event is about.
    pub fn worker(&self) -> WorkerRef {
        match self {
            LifecycleEvent::Fork(w)
            | LifecycleEvent::Online(w)
            | LifecycleEvent::Listening(w, _)
            | LifecycleEvent::Disconnect(w) => *w,
            LifecycleEvent::Exit { worker, .. }
            | LifecycleEvent::Failing { worker, .. }
            | LifecycleEvent::Recycled { worker, .. }
            | LifecycleEvent::Stalled { worker, .. }
            | LifecycleEvent::SpawnFailed { worker, .. } => *worker,
        }
    }

    /// The event's name: `fork`, `online`, `listening`, `failing`, `recycled`,
    /// `stalled`, `spawn_failed`, `disconnect`, `exit` (Node's `cluster` names, plus
    /// ours).
    pub fn name(&self) -> &'static str {
        match self {
            LifecycleEvent::Fork(_) => "fork",
            LifecycleEvent::Online(_) => "online",
            LifecycleEvent::Listening(..) => "listening",
            LifecycleEvent::Failing { .. } => "failing",
            LifecycleEvent::Recycled { .. } => "recycled",
            LifecycleEvent::Stalled { .. } => "stalled",
            LifecycleEvent::SpawnFailed { .. } => "spawn_failed",
            LifecycleEvent::Disconnect(_) => "disconnect",
            LifecycleEvent::Exit { .. } => "exit",
        }
    }
}
