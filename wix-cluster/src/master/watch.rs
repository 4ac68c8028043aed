//! Watch mode (`WIX_CLUSTER_WATCH=1`, [`ClusterBuilder::watch`]): the master watches its
//! program file and, when a build replaces it, upgrades the cluster to it without
//! closing the port (a master upgrade, so a new protocol is fine too).
//!
//! The file is polled (a rename over it, as `cargo build` and deployments do, changes
//! its inode, which a watch on the old inode would miss) and debounced: the change must
//! hold still for [`SETTLE`] before it counts. A build that fails to start is logged by
//! the upgrade and the old cluster keeps serving; that file is not tried again until it
//! changes once more.
//!
//! In a terminal the first master stays as a keeper after its handover (see
//! `keeper`), so that `cargo run` does not return while the cluster runs.
//!
//! [`ClusterBuilder::watch`]: crate::ClusterBuilder::watch

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::Master;

/// How often the program file is looked at.
const POLL: Duration = Duration::from_millis(250);
/// How long a change must hold still before the cluster upgrades to it.
const SETTLE: Duration = Duration::from_millis(500);

/// What tells one file (or one version of it) from another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Identity {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: i64,
    mtime_nsec: i64,
    executable: bool,
}

fn identity(path: &Path) -> Option<Identity> {
    let meta = std::fs::metadata(path).ok()?;
    Some(Identity {
        dev: meta.dev(),
        ino: meta.ino(),
        size: meta.size(),
        mtime: meta.mtime(),
        mtime_nsec: meta.mtime_nsec(),
        executable: meta.is_file() && meta.mode() & 0o111 != 0,
    })
}

/// Watches `program` until the cluster stops; asks `master` to upgrade on each settled
/// change to an executable file.
pub(crate) fn start(program: PathBuf, master: Master) {
    tracing::info!(
        "watch mode: upgrading the cluster whenever {} changes",
        program.display()
    );
    tokio::spawn(async move {
        let mut current = identity(&program);
        let mut changed: Option<(Option<Identity>, tokio::time::Instant)> = None;
        let mut ticks = tokio::time::interval(POLL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            if master.is_stopping() {
                return;
            }
            let seen = identity(&program);
            if seen == current {
                changed = None;
                continue;
            }
            let since = match changed {
                Some((candidate, since)) if candidate == seen => since,
                _ => {
                    changed = Some((seen, tokio::time::Instant::now()));
                    continue;
                }
            };
            if since.elapsed() < SETTLE {
                continue;
            }
            current = seen;
            changed = None;
            if seen.is_some_and(|file| file.executable) {
                tracing::info!(
                    "{} changed: upgrading the cluster to the new build",
                    program.display()
                );
                master.upgrade();
            }
        }
    });
}
