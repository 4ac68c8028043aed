//! `Graceful`: how long a stopping worker may drain before the master kills it, and how
//! long the cluster reports not ready before the drain starts.

use std::time::Duration;

use crate::{Master, Plugin, PluginError};

/// Workers asked to stop get `timeout` (default 5 s) to finish what
/// is in flight and exit; then the master kills them.
///
/// With a `delay`, a stop (SIGTERM, SIGINT, [`Master::shutdown`]) first turns the
/// management app's `/health/ready` to 503 and leaves the workers serving for `delay`,
/// so that a load balancer or Kubernetes stops sending traffic before any worker stops
/// accepting; then the drain starts. `WIX_CLUSTER_DRAIN_DELAY` overrides it.
#[derive(Debug, Clone)]
pub struct Graceful {
    timeout: Duration,
    delay: Duration,
}

impl Default for Graceful {
    fn default() -> Self {
        Graceful {
            timeout: crate::config::DEFAULT_DRAIN_TIMEOUT,
            delay: Duration::ZERO,
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
}

impl Plugin for Graceful {
    fn name(&self) -> &str {
        "Graceful"
    }

    async fn on_master(&self, master: &Master) -> Result<(), PluginError> {
        master.set_drain_timeout(self.timeout);
        master.set_drain_delay(self.delay);
        Ok(())
    }
}
