//! Fixed limits: the most workers a cluster runs, and the descriptor limit: a master
//! (or the one process) raises its soft `RLIMIT_NOFILE` to the hard limit at start, as Go's runtime and nginx's
//! `worker_rlimit_nofile` do, so that its workers inherit it. systemd starts services
//! with a soft limit of 1024 and documents that a service needing more should raise it
//! itself; 1024 is a few hundred slow clients per worker.

use nix::sys::resource::{Resource, getrlimit, setrlimit};

/// The most workers a cluster runs (configured, or scaled to), from any source.
pub const MAX_WORKERS: usize = 1024;

/// Raises the soft descriptor limit to the hard one; logged once.
pub(crate) fn raise_nofile() {
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => tracing::info!("raised the descriptor limit from {soft} to {hard}"),
            Err(e) => {
                tracing::warn!("cannot raise the descriptor limit from {soft} to {hard}: {e}")
            }
        },
        Ok(_) => {}
        Err(e) => tracing::warn!("cannot read the descriptor limit: {e}"),
    }
}
