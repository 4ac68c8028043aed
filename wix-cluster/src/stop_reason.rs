//! [`StopReason`]: why a worker drains, which tells its clients whether to come back.

use serde::{Deserialize, Serialize};

/// Why a worker was asked to stop ([`crate::Worker::stop_reason`]).
///
/// A long-lived connection closes differently for each: a WebSocket gets close code
/// 1012 (Service Restart) for [`StopReason::Restart`] and 1001 (Going Away) for
/// [`StopReason::Stop`] (see [`crate::websocket`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StopReason {
    /// The service goes on without this worker: a rolling restart, a recycle, a master
    /// upgrade, a scale-down, or a worker replaced after a failure or a signal. Clients
    /// should reconnect at once: another worker takes them.
    Restart,
    /// The cluster stops (SIGTERM or SIGINT to the master, `Master::shutdown`, the
    /// single process stopping).
    Stop,
}

impl StopReason {
    /// The WebSocket close code for it (RFC 6455 §7.4.1; 1012 in IANA's registry).
    pub fn websocket_close_code(self) -> u16 {
        match self {
            StopReason::Restart => 1012,
            StopReason::Stop => 1001,
        }
    }
}
