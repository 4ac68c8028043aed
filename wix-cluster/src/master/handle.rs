//! [`Master`]: what plugins (and later the management app) may ask of the master.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::WorkerId;
use crate::config::Config;

/// A request to the supervision loop.
#[derive(Debug)]
pub(crate) enum Command {
    /// Start a new process in slot `id` once `after` has passed.
    Respawn { id: WorkerId, after: Duration },
    /// Stop every worker gracefully, then exit with `code`.
    Shutdown { code: u8 },
}

/// A handle on the master, given to plugin hooks. Cheap to clone; usable from any task.
#[derive(Clone)]
pub struct Master {
    commands: mpsc::UnboundedSender<Command>,
    shared: Arc<Shared>,
}

struct Shared {
    workers: usize,
    single_process: bool,
    management: SocketAddr,
    drain_timeout: Mutex<Duration>,
}

impl Master {
    pub(crate) fn new(config: &Config) -> (Master, mpsc::UnboundedReceiver<Command>) {
        let (commands, receiver) = mpsc::unbounded_channel();
        let master = Master {
            commands,
            shared: Arc::new(Shared {
                workers: if config.single_process {
                    1
                } else {
                    config.workers
                },
                single_process: config.single_process,
                management: config.management,
                drain_timeout: Mutex::new(crate::config::DEFAULT_DRAIN_TIMEOUT),
            }),
        };
        (master, receiver)
    }

    /// How many workers the cluster keeps running.
    pub fn desired_workers(&self) -> usize {
        self.shared.workers
    }

    /// Whether the cluster runs as one process.
    pub fn is_single_process(&self) -> bool {
        self.shared.single_process
    }

    /// Where the management app listens (`127.0.0.1:8084` unless configured).
    pub fn management_addr(&self) -> SocketAddr {
        self.shared.management
    }

    /// Starts a replacement process in slot `id` after `after`. Ignored while the
    /// cluster is stopping or if the slot is occupied by then.
    pub fn respawn(&self, id: WorkerId, after: Duration) {
        let _ = self.commands.send(Command::Respawn { id, after });
    }

    /// Stops every worker gracefully; the master then exits with `exit_code`.
    pub fn shutdown(&self, exit_code: u8) {
        let _ = self.commands.send(Command::Shutdown { code: exit_code });
    }

    /// How long a stopping worker has to exit before it is killed (default 5 s).
    pub fn drain_timeout(&self) -> Duration {
        *self
            .shared
            .drain_timeout
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Sets [`Master::drain_timeout`].
    pub fn set_drain_timeout(&self, timeout: Duration) {
        *self
            .shared
            .drain_timeout
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = timeout;
    }
}

impl std::fmt::Debug for Master {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Master")
            .field("desired_workers", &self.desired_workers())
            .field("single_process", &self.is_single_process())
            .finish()
    }
}
