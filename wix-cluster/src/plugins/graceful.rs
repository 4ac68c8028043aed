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
/// A stopping master (a stop, or the old master once an upgrade handed over) kills what
/// is left and exits after `hard_stop_after` in all (default: the delay plus the timeout
/// plus 5 s), so nothing keeps an old master alive. `WIX_CLUSTER_HARD_STOP_AFTER`
/// overrides it.
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
    hard_stop_after: Option<Duration>,
}

impl Default for Graceful {
    fn default() -> Self {
        Graceful {
            timeout: crate::config::DEFAULT_DRAIN_TIMEOUT,
            delay: Duration::ZERO,
            max_draining: crate::config::DEFAULT_MAX_DRAINING,
            hard_stop_after: None,
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

    /// How long a stopping master (a stop, or the old master once an upgrade handed
    /// over) may take in all before it kills what is left and exits. Default: the delay
    /// plus the timeout plus 5 s; `WIX_CLUSTER_HARD_STOP_AFTER` overrides it.
    pub fn hard_stop_after(mut self, after: Duration) -> Self {
        self.hard_stop_after = Some(after);
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
        master.set_hard_stop_after(self.hard_stop_after);
        Ok(())
    }
}
