//! The management app: one HTTP server in the master (in the one process in
//! single-process mode) with info, worker, health, stats, metrics and dashboard pages,
//! four admin actions, and the user's own pages mounted beside them; its discovery file
//! (`crate::discovery`) names it while it serves.
//!
//! One concept per file: `settings` (what the program configures), `server` (bind and
//! serve), `listener` (stops accepting at an upgrade's handover), `routes` (the router
//! and its shared context), `info`, `workers` (the worker table), `health`, `stats` (the
//! sampler and its history), `metrics` (Prometheus, written by `exposition`), `traffic`
//! (requests per second and latency over time, for the dashboard), `events` (the event
//! log and its live stream), `delivery` (whether a stream's client takes what is sent),
//! `dashboard` (the HTML page), `host` (the `Host` check in front of every page), `admin` (the admin actions,
//! restart, scale, upgrade and stop, and the bearer token that guards them).

mod admin;
mod dashboard;
mod delivery;
mod events;
mod exposition;
mod health;
mod host;
mod info;
mod listener;
mod metrics;
mod routes;
mod server;
mod stats;
mod traffic;
mod workers;

use std::time::Duration;

use crate::Master;
use crate::config::Config;

/// Starts the management app on `master.management_addr()`: the sampler and the
/// server, as tasks of the current runtime. Returns at once; a failure to bind is
/// logged and the cluster keeps running without the app. Keep the handle for the life
/// of the process (dropping it removes the discovery file).
pub(crate) fn start(master: &Master, config: &Config) -> Option<Serving> {
    bind(master.management_addr()).map(|listener| start_on(listener, master, config))
}

/// Binds the management app's address; `None` (logged) when it cannot be bound.
pub(crate) fn bind(addr: std::net::SocketAddr) -> Option<std::net::TcpListener> {
    server::bind(addr)
}

/// Starts the management app on a socket bound already (or handed over by the master
/// this one replaces).
pub(crate) fn start_on(
    listener: std::net::TcpListener,
    master: &Master,
    config: &Config,
) -> Serving {
    let stats = stats::Stats::new(config.management_app.sample_interval);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let ctx = routes::Ctx::new(master.clone(), config, stats, stopped.clone());
    let app = routes::router(ctx.clone(), config.management_app.pages.clone());
    let discovery = listener
        .local_addr()
        .ok()
        .and_then(|addr| publish(&ctx, addr));
    let task = tokio::spawn(server::serve(listener, ctx, app, stopped, config.timeouts));
    Serving {
        stop,
        task,
        discovery: parking_lot::Mutex::new(discovery),
    }
}

/// Writes this master's discovery file, for `wix-cluster ls` (not in single-process
/// mode's one process either: it has a management app to find too).
fn publish(ctx: &routes::Ctx, addr: std::net::SocketAddr) -> Option<crate::discovery::Published> {
    crate::discovery::publish(&crate::discovery::Entry {
        name: ctx.about.name.clone(),
        version: ctx.about.version.clone(),
        pid: std::process::id(),
        management_addr: addr,
        mount_point: ctx.about.mount_point.clone(),
        started_at: crate::discovery::unix_seconds(ctx.master.started_at()),
    })
}

/// A running management app; dropping this leaves it serving (and removes its
/// discovery file: the process is exiting).
pub(crate) struct Serving {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    /// The discovery file naming this app, removed when it stops accepting.
    discovery: parking_lot::Mutex<Option<crate::discovery::Published>>,
}

impl Serving {
    /// Accepts no more connections (after a master upgrade, the new master's app
    /// answers on the same socket).
    pub(crate) fn stop_accepting(&self) {
        // The new master writes its own discovery file once its app serves.
        drop(self.discovery.lock().take());
        let _ = self.stop.send(true);
    }

    /// Stops accepting and waits, at most `within`, for the requests it accepted
    /// already to be answered (a master about to exit after an upgrade).
    pub(crate) async fn finish(self, within: Duration) {
        self.stop_accepting();
        if tokio::time::timeout(within, self.task).await.is_err() {
            tracing::debug!("the management app still had connections after {within:?}");
        }
    }
}
