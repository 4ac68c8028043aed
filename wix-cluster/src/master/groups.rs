//! What a worker starts ends with it. Each worker leads a process group of its own
//! (set at spawn), which the programs its app starts join unless they leave it. Once a
//! worker has ended (exited, stopped or killed, at a stop of the cluster too) and been
//! reaped, what is left of its group gets SIGTERM, and SIGKILL after the drain timeout
//! when something of it is still there; the master exits only once every such group is
//! empty or killed. `WIX_CLUSTER_KEEP_WORKER_CHILDREN=1` leaves the groups alone, for
//! programs meant to outlive their worker.

use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use tokio::task::JoinSet;

/// How often an ending group is looked at.
const CHECK_EVERY: Duration = Duration::from_millis(100);

/// The most groups waited for at once; past it, a group is killed at once.
const MAX_ENDING: usize = 4096;

/// The process groups of ended workers, until they are empty.
pub(crate) struct Groups {
    /// `WIX_CLUSTER_KEEP_WORKER_CHILDREN`: never signal them.
    keep: bool,
    ending: JoinSet<()>,
}

impl Groups {
    /// With `keep`, what workers start is left alone.
    pub(crate) fn new(keep: bool) -> Groups {
        Groups {
            keep,
            ending: JoinSet::new(),
        }
    }

    /// Worker `pid`, the leader of its group, has been reaped: SIGTERM to what is left
    /// of the group, SIGKILL after `grace` (the drain timeout) to what is still there.
    pub(crate) fn end(&mut self, pid: u32, grace: Duration) {
        if self.keep {
            return;
        }
        while self.ending.try_join_next().is_some() {}
        let Ok(raw) = i32::try_from(pid) else { return };
        if raw <= 1 {
            return;
        }
        let group = Pid::from_raw(raw);
        match killpg(group, Signal::SIGTERM) {
            Ok(()) => {}
            Err(Errno::ESRCH) => return, // nothing was left in it
            Err(e) => {
                tracing::debug!("cannot signal the process group of pid {pid}: {e}");
                return;
            }
        }
        tracing::debug!("worker pid {pid} ended: SIGTERM to what is left of its group");
        if self.ending.len() >= MAX_ENDING {
            kill(pid);
            return;
        }
        self.ending.spawn(async move {
            // A century at most: `Duration::MAX` is a valid drain timeout.
            let century = Duration::from_secs(100 * 365 * 24 * 3600);
            let deadline = tokio::time::Instant::now() + grace.min(century);
            loop {
                reap_adopted(pid);
                if !crate::procfs::group_has_live_members(pid) {
                    return;
                }
                if tokio::time::Instant::now() >= deadline {
                    break;
                }
                tokio::time::sleep(CHECK_EVERY).await;
            }
            tracing::warn!(
                "what worker pid {pid} started was still there {grace:?} after the SIGTERM; \
                 killing it"
            );
            kill(pid);
        });
    }

    /// Before the master exits: waits until every group signalled is empty or killed.
    pub(crate) async fn finish(mut self) {
        while self.ending.join_next().await.is_some() {}
    }
}

/// SIGKILL to the group `pid` led, unless `pid` now names a live process again (a new
/// process that got the number, maybe leading a group of that id itself).
fn kill(pid: u32) {
    if crate::procfs::is_live(pid) {
        return;
    }
    let Ok(raw) = i32::try_from(pid) else { return };
    if let Err(e) = killpg(Pid::from_raw(raw), Signal::SIGKILL) {
        if e != Errno::ESRCH {
            tracing::debug!("cannot kill the process group of pid {pid}: {e}");
        }
    }
}

/// Reaps the members of group `pid` that became this process's children (a subreaper,
/// in watch mode, adopts the orphans of its descendants), so that they do not linger as
/// zombies. Never while `pid` names a live process again: that would be a new worker,
/// which tokio reaps.
fn reap_adopted(pid: u32) {
    if crate::procfs::is_live(pid) {
        return;
    }
    let Ok(raw) = i32::try_from(pid) else { return };
    while let Ok(status) = waitpid(Pid::from_raw(-raw), Some(WaitPidFlag::WNOHANG)) {
        if status == WaitStatus::StillAlive {
            break;
        }
    }
}
