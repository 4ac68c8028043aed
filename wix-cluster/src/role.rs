//! Which part this process plays, decided before any runtime starts: a worker (the master
//! started it and left a marker in its environment) or the top-level process.

use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use crate::WorkerId;

/// The internal marker a master sets on the workers it spawns:
/// `<id>:<generation>:<channel fd>:<master pid>:<metrics segment fd>`, then
/// `:<board fd>:<board slot>` when the worker has a seat on the master's fair-accepting
/// board (`crate::fair_share`).
pub(crate) const ENV_WORKER_MARKER: &str = "__WIX_CLUSTER_WORKER";

/// What the marker tells a worker about itself.
#[derive(Debug)]
pub(crate) struct WorkerMarker {
    pub(crate) id: WorkerId,
    pub(crate) generation: u32,
    pub(crate) channel: OwnedFd,
    pub(crate) master_pid: u32,
    /// The shared segment the worker's metrics live in (`crate::metrics`).
    pub(crate) metrics: OwnedFd,
    /// The fair-accepting board and this process's slot on it (`crate::fair_share`).
    pub(crate) board: Option<(OwnedFd, usize)>,
}

/// This process's part.
#[derive(Debug)]
pub(crate) enum Role {
    Worker(WorkerMarker),
    /// Master, or the one process of single-process mode (the configuration decides).
    TopLevel,
}

impl WorkerMarker {
    /// Formats the marker for a worker about to be spawned.
    pub(crate) fn encode(
        id: WorkerId,
        generation: u32,
        channel: RawFd,
        master_pid: u32,
        metrics: RawFd,
        board: Option<(RawFd, usize)>,
    ) -> String {
        let marker = format!("{id}:{generation}:{channel}:{master_pid}:{metrics}");
        match board {
            Some((fd, slot)) => format!("{marker}:{fd}:{slot}"),
            None => marker,
        }
    }
}

/// Reads and removes the marker, so that programs the app starts do not see it.
///
/// Must run before any other thread exists (it edits the environment).
pub(crate) fn detect() -> Result<Role, String> {
    let Some(raw) = std::env::var_os(ENV_WORKER_MARKER) else {
        return Ok(Role::TopLevel);
    };
    // SAFETY: called first thing in `Cluster::run`, before the program has started any
    // runtime or thread, so nothing reads the environment concurrently.
    unsafe { std::env::remove_var(ENV_WORKER_MARKER) };
    let raw = raw.to_string_lossy();
    let bad = || format!("invalid internal variable {ENV_WORKER_MARKER}={raw:?}");
    let parts: Vec<&str> = raw.split(':').collect();
    let ([id, generation, fd, master_pid, metrics], board) = match parts.as_slice() {
        [id, generation, fd, master_pid, metrics] => {
            ([id, generation, fd, master_pid, metrics], None)
        }
        [id, generation, fd, master_pid, metrics, board, slot] => (
            [id, generation, fd, master_pid, metrics],
            Some((board, slot)),
        ),
        _ => return Err(bad()),
    };
    let id: u32 = id.parse().map_err(|_| bad())?;
    let generation: u32 = generation.parse().map_err(|_| bad())?;
    let fd: RawFd = fd.parse().map_err(|_| bad())?;
    let master_pid: u32 = master_pid.parse().map_err(|_| bad())?;
    let metrics: RawFd = metrics.parse().map_err(|_| bad())?;
    if metrics == fd {
        return Err(bad());
    }
    let board = match board {
        Some((board, slot)) => {
            let board: RawFd = board.parse().map_err(|_| bad())?;
            let slot: usize = slot.parse().map_err(|_| bad())?;
            if board == fd || board == metrics {
                return Err(bad());
            }
            Some((board, slot))
        }
        None => None,
    };
    let channel = adopt_fd(fd).map_err(|e| format!("{}: {e}", bad()))?;
    let metrics = adopt_fd(metrics).map_err(|e| format!("{}: {e}", bad()))?;
    let board = match board {
        Some((board, slot)) => Some((
            adopt_fd(board).map_err(|e| format!("{}: {e}", bad()))?,
            slot,
        )),
        None => None,
    };
    Ok(Role::Worker(WorkerMarker {
        id: WorkerId(id),
        generation,
        channel,
        master_pid,
        metrics,
        board,
    }))
}

/// Takes ownership of `fd`, a descriptor this process inherited on purpose (a channel
/// named in an internal variable), and marks it close-on-exec so that programs this
/// process starts do not inherit it. Each descriptor must be adopted at most once.
pub(crate) fn adopt_fd(fd: RawFd) -> Result<OwnedFd, String> {
    if !is_open(fd) {
        return Err(format!("descriptor {fd} is not open"));
    }
    // SAFETY: the parent passed this descriptor to this process for exactly this
    // purpose, it is open (checked above), and the variable naming it is removed
    // before this is called, so it is adopted only once.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    nix::fcntl::fcntl(
        &owned,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    )
    .map_err(|e| format!("cannot mark descriptor {fd} close-on-exec: {e}"))?;
    Ok(owned)
}

fn is_open(fd: RawFd) -> bool {
    if fd < 0 {
        return false;
    }
    // SAFETY: the borrow only lives for an F_GETFD probe, harmless on any number.
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFD).is_ok()
}
