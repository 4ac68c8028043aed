//! The tokio runtimes: a small single-threaded one for the master, and the one the
//! configuration asks for in each worker.

use std::io;

use crate::config::{Config, Flavor};

/// The master's runtime: one thread. Spawning happens on it, which matters:
/// `PR_SET_PDEATHSIG` fires when the *thread* that forked a worker ends.
pub(crate) fn master() -> io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

/// A worker's runtime (also the one process's in single-process mode).
pub(crate) fn worker(config: &Config) -> io::Result<tokio::runtime::Runtime> {
    match config.flavor {
        Flavor::CurrentThread => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        Flavor::MultiThread => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            if let Some(threads) = config.worker_threads {
                builder.worker_threads(threads);
            }
            builder.enable_all().build()
        }
    }
}
