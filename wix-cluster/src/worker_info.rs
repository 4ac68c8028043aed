//! What the master knows about each worker, as plugins (and the management app) see it.

use std::time::{Duration, SystemTime};

use crate::WorkerRef;

/// Where a worker is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WorkerState {
    /// Spawned; its runtime has not said hello yet.
    Starting,
    /// Handshake done; the app is starting.
    Online,
    /// The app holds a listener and accepts connections.
    Ready,
    /// Asked to stop, replaced, or going down on its own: finishing what is in flight.
    Draining,
}

impl WorkerState {
    /// `starting`, `online`, `ready` or `draining`.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkerState::Starting => "starting",
            WorkerState::Online => "online",
            WorkerState::Ready => "ready",
            WorkerState::Draining => "draining",
        }
    }
}

/// The connections a worker's [`crate::http::serve`] has open, by kind, as of its last
/// heartbeat.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OpenConnections {
    /// HTTP/1.x connections (and connections that have not sent a request yet).
    pub http1: u32,
    /// HTTP/2 connections.
    pub http2: u32,
    /// Connections upgraded out of HTTP (WebSockets).
    pub upgraded: u32,
}

/// How busy a worker was over its last heartbeat's second, as
/// [`crate::plugins::Autoscale`] reads it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct WorkerLoad {
    /// The share of the time it had work in hand (a request of [`crate::http::serve`]
    /// from its head until its response head, or a job counted by
    /// [`crate::metrics::APP_BUSY`]): 0 to 1.
    pub busy: f64,
    /// The share of the time its event loop ran late (its heartbeat's tick): 0 to 1.
    pub lag: f64,
    /// The most work it had in hand at once.
    pub peak: u32,
    /// The most workers of the cluster that had work in hand at once, as this one saw
    /// them (when it started work, and at its heartbeat); `None` unless the autoscaler
    /// runs (the workers then share that on the fair-accepting board).
    pub together: Option<u32>,
}

/// A snapshot of one worker process.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerInfo {
    /// Slot, generation and pid.
    pub worker: WorkerRef,
    /// Where it is in its life.
    pub state: WorkerState,
    /// When it was spawned.
    pub started_at: SystemTime,
    /// How long since its last heartbeat (or since its spawn, before the first one).
    pub since_heartbeat: Duration,
    /// Requests its HTTP helper has served, as of its last heartbeat.
    pub requests: u64,
    /// Times its HTTP helper could not accept a connection for lack of descriptors or
    /// memory (it backs off 50 ms each time), as of its last heartbeat.
    pub accept_errors: u64,
    /// Its open connections by kind, as of its last heartbeat.
    pub connections: OpenConnections,
    /// How busy it was between its last two heartbeats (`None` before its second).
    pub load: Option<WorkerLoad>,
}
