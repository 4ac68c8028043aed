//! `Graceful`: how long a stopping worker may drain before the master kills it, and how
//! long the cluster reports not ready before the drain starts.

use std::time::Duration;

use crate::{Master, Plugin, PluginError};

/// Workers asked to stop get `timeout` (default 5 s) to finish what
/// is in flight and exit; then the master kills them.
///
/// At most `max_draining` (default 2) old workers of a slot drain at once: a roll that
/// would leave more tells the oldest its drain is over (it closes what is left, its
/// WebSockets with a close frame, and exits; or is killed 1 s later).
/// `WIX_CLUSTER_MAX_DRAINING` overrides it.
///
/// With a `delay`, a stop (SIGTERM, SIGINT, [`Master::shutdown`]) first turns the
/// management app's `/health/ready` to 503 and leaves the workers serving for `delay`,
/// so that a load balancer or Kubernetes stops sending traffic before any worker stops
/// accepting; then the drain starts. `WIX_CLUSTER_DRAIN_DELAY` overrides it.
#[derive(Debug, Clone)]
pub struct Graceful {
    timeout: Duration,
    delay: Duration,
    max_draining: usize,
}

impl Default for Graceful {
    fn default() -> Self {
        Graceful {
            timeout: crate::config::DEFAULT_DRAIN_TIMEOUT,
            delay: Duration::ZERO,
            max_draining: crate::config::DEFAULT_MAX_DRAINING,
        }
    }
}

impl Graceful {
    /// How long a stopping worker may take before it is killed. Default 5 s.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How long a stopping cluster reports not ready, still serving, before its workers
    /// drain. Default 0 (drain at once); `WIX_CLUSTER_DRAIN_DELAY` overrides it.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// How many old workers of one slot may drain at once (at least 1, at most 64).
    /// Default 2; `WIX_CLUSTER_MAX_DRAINING` overrides it.
    pub fn max_draining(mut self, max: usize) -> Self {
        self.max_draining = max;
        self
    }
}

impl Plugin for Graceful {
    fn name(&self) -> &str {
        "Graceful"
    }

    async fn on_master(&self, master: &Master) -> Result<(), PluginError> {
        master.set_drain_timeout(self.timeout);
        master.set_drain_delay(self.delay);
        master.set_max_draining(self.max_draining);
        Ok(())
    }
}
