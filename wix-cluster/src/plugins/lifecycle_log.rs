//! `LifecycleLog`: every lifecycle event as one `tracing` line.

use crate::{LifecycleEvent, Master, Plugin};

/// Logs every lifecycle event at `info` (target `wix_cluster::lifecycle`).
#[derive(Debug, Default, Clone)]
pub struct LifecycleLog;

impl Plugin for LifecycleLog {
    fn name(&self) -> &str {
        "LifecycleLog"
    }

    fn on_event(&self, event: &LifecycleEvent, _master: &Master) {
        let worker = event.worker();
        match event {
            LifecycleEvent::Listening(_, addr) => {
                tracing::info!(target: "wix_cluster::lifecycle", event = "listening", "{worker} listening on {addr}")
            }
            LifecycleEvent::Exit {
                reason, requested, ..
            } => {
                let how = if *requested {
                    "as asked"
                } else {
                    "unexpectedly"
                };
                tracing::info!(target: "wix_cluster::lifecycle", event = "exit", "{worker} exited {how} ({reason})")
            }
            LifecycleEvent::SpawnFailed { error, .. } => {
                tracing::info!(target: "wix_cluster::lifecycle", event = "spawn_failed", "worker {} could not be started: {error}", worker.id)
            }
            other => {
                let name = other.name();
                tracing::info!(target: "wix_cluster::lifecycle", event = name, "{worker} {name}")
            }
        }
    }
}
