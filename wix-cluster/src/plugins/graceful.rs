//! `Graceful`: how long a stopping worker may drain before the master kills it.

use std::time::Duration;

use crate::{Master, Plugin, PluginError};

/// Workers asked to stop get `timeout` (default 5 s, as in the original) to finish what
/// is in flight and exit; then the master kills them.
#[derive(Debug, Clone)]
pub struct Graceful {
    timeout: Duration,
}

impl Default for Graceful {
    fn default() -> Self {
        Graceful {
            timeout: crate::config::DEFAULT_DRAIN_TIMEOUT,
        }
    }
}

impl Graceful {
    /// How long a stopping worker may take before it is killed. Default 5 s.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

impl Plugin for Graceful {
    fn name(&self) -> &str {
        "Graceful"
    }

    async fn on_master(&self, master: &Master) -> Result<(), PluginError> {
        master.set_drain_timeout(self.timeout);
        Ok(())
    }
}
