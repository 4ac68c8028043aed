//! # wix-cluster
//!
//! Runs a server program as a small cluster of processes on one machine: a **master**
//! that owns the listening sockets and supervises, and N **workers** that each run the
//! app and accept connections from the same shared sockets. The Rust heir of Node's
//! `cluster` module as Wix wrapped it.
//!
//! ```no_run
//! #[wix_cluster::main(workers = 4, plugins(Respawn, Graceful))]
//! async fn main(worker: wix_cluster::Worker) -> std::io::Result<()> {
//!     let listener = worker.listen("127.0.0.1:8080").await?;
//!     let app = axum::Router::new().route("/", axum::routing::get(|| async { "Hi there" }));
//!     wix_cluster::http::serve(listener, app, &worker).await
//! }
//! ```
//!
//! [`http::serve`] is how a worker serves HTTP: it drains keep-alive connections safely
//! when the worker stops or is replaced (`axum::serve(..).with_graceful_shutdown(..)`
//! would cut the requests a client sends on a keep-alive connection during a rolling
//! restart), counts requests for the management app and applies the connection
//! timeouts.
//!
//! The attribute expands into [`Cluster::builder`] calls, which can be written by hand.
//! The operating contract (environment variables, signals, defaults) is in
//! [docs/operating.md](https://github.com/wix/wix-cluster-rs/blob/main/docs/operating.md);
//! a guide from a first app to production in
//! [docs/guide.md](https://github.com/wix/wix-cluster-rs/blob/main/docs/guide.md).

mod app;
mod busy;
mod cluster;
pub mod config;
mod connection;
pub mod discovery;
mod event;
mod event_log;
pub mod exchange;
mod fair_share;
pub mod http;
mod ipc;
mod limits;
mod listener;
mod logging;
mod management;
mod master;
pub mod metrics;
mod plugin;
pub mod plugins;
mod procfs;
mod protocol;
mod role;
mod runtime;
mod shm;
mod signals;
mod single;
mod stop_reason;
pub mod websocket;
mod worker;
mod worker_id;
mod worker_info;

pub use app::AppResult;
pub use cluster::{Cluster, ClusterBuilder};
pub use config::{ConfigError, Flavor, SingleProcess};
pub use config::{ManagementApp, ManagementAppBuilder};
pub use event::{ExitReason, LifecycleEvent, WorkerRef};
pub use event_log::{EVENT_LOG_CAPACITY, EventRecord, MAX_CAUSE_BYTES};
pub use exchange::{AppData, Exchange, ExchangeError, Peer, Subscription};
pub use master::{ClusterCounters, Master};
pub use plugin::{Plugin, PluginError};
pub use stop_reason::StopReason;
pub use worker::Worker;
pub use worker_id::WorkerId;
pub use worker_info::{OpenConnections, WorkerInfo, WorkerLoad, WorkerState};

#[doc(inline)]
pub use wix_cluster_macros::{exchange, main};

/// The decoders, for the fuzz targets in `fuzz/`; not a public API.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod __fuzz {
    /// Feeds `bytes` to a frame reader (in pieces of `split` bytes, at least 1) and
    /// decodes every message as worker -> master and master -> worker messages, as the
    /// master's and the worker's readers do; never panics.
    pub fn frames(bytes: &[u8], split: usize) {
        crate::ipc::fuzz_frames(bytes, split);
    }

    /// Decodes `bytes` as one message of every kind that crosses a channel.
    pub fn messages(bytes: &[u8]) {
        let _ = postcard::from_bytes::<crate::protocol::ToMaster>(bytes);
        let _ = postcard::from_bytes::<crate::protocol::ToWorker>(bytes);
        crate::master::fuzz_handing(bytes);
    }

    /// Encodes `bytes` as an exchange payload of `len` bytes and reads it back: the
    /// parts must come back whole.
    pub fn round_trip(payload: &[u8], split: usize) {
        crate::ipc::fuzz_round_trip(payload, split);
    }
}

/// What `#[wix_cluster::main]` expands to refers to; not a public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::cluster::Cluster;
    pub use crate::config::{Flavor, SingleProcess};
    pub use crate::plugins;
    pub use crate::plugins::DefaultPlugin;
    pub use serde;

    /// What `#[wix_cluster::exchange]`'s generated methods call.
    pub mod exchange {
        pub use crate::exchange::{
            broadcast, handle, request, request_within, send, send_to, subscribe,
        };

        /// Sends raw bytes on `topic` to the master (test fixtures: a payload that does
        /// not decode).
        pub fn send_raw(topic: &str, payload: Vec<u8>) -> Result<(), crate::ExchangeError> {
            crate::exchange::send_raw(topic, payload)
        }

        /// Broadcasts raw bytes on `topic` (test fixtures: a payload that does not
        /// decode).
        pub fn broadcast_raw(topic: &str, payload: Vec<u8>) -> Result<(), crate::ExchangeError> {
            crate::exchange::broadcast_raw(topic, payload)
        }
    }
}
