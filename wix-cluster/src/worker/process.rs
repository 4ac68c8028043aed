//! A worker process from start to exit: die with the master, connect, run the plugins'
//! worker hooks, run the app, exit with its outcome.

use std::future::Future;
use std::process::ExitCode;
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};

use super::Worker;
use super::link::Link;
use crate::app::AppResult;
use crate::config::Config;
use crate::plugin::Plugins;
use crate::protocol::ToMaster;
use crate::role::WorkerMarker;

/// How often the worker tells the master its event loop is alive.
pub(crate) const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);

pub(crate) fn run<F, Fut>(
    marker: WorkerMarker,
    config: &Config,
    plugins: Plugins,
    app: F,
) -> ExitCode
where
    F: FnOnce(Worker) -> Fut,
    Fut: Future,
    Fut::Output: AppResult,
{
    // Die with the master even if it is SIGKILLed. The spawner set this before exec
    // too; setting it again is harmless, and the parent check closes the window where
    // the master died before this process could notice.
    if let Err(e) = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL) {
        tracing::warn!("cannot ask to die with the master: {e}");
    }
    if nix::unistd::getppid().as_raw() as u32 != marker.master_pid {
        tracing::error!("the master (pid {}) is gone; exiting", marker.master_pid);
        return ExitCode::FAILURE;
    }
    let runtime = match crate::runtime::worker(config) {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!("cannot start the worker's runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(serve(marker, plugins, app));
    // Tasks the app left behind (blocking ones included) must not hold up the exit.
    runtime.shutdown_background();
    code
}

async fn serve<F, Fut>(marker: WorkerMarker, plugins: Plugins, app: F) -> ExitCode
where
    F: FnOnce(Worker) -> Fut,
    Fut: Future,
    Fut::Output: AppResult,
{
    let (link, reader) = match Link::connect(marker.channel).await {
        Ok(connected) => connected,
        Err(e) => {
            tracing::error!("cannot reach the master: {e}");
            return ExitCode::FAILURE;
        }
    };
    let worker = Worker::new(marker.id, marker.generation, Some(link.clone()));
    let on_stop = worker.clone();
    tokio::spawn(
        link.clone()
            .read_loop(reader, move || on_stop.begin_shutdown()),
    );
    tokio::spawn(heartbeat(link));
    if let Err(e) = stop_on_signals(worker.clone()) {
        tracing::warn!("cannot watch SIGTERM/SIGINT: {e}");
    }
    run_app(&plugins, worker, app).await
}

/// Runs the plugins' worker hooks, then the app; shared with single-process mode.
pub(crate) async fn run_app<F, Fut>(plugins: &Plugins, worker: Worker, app: F) -> ExitCode
where
    F: FnOnce(Worker) -> Fut,
    Fut: Future,
    Fut::Output: AppResult,
{
    for plugin in plugins {
        if let Err(e) = plugin.on_worker(&worker).await {
            tracing::error!(
                "plugin {} failed to start in the worker: {e}",
                plugin.name()
            );
            return ExitCode::FAILURE;
        }
    }
    match app(worker).await.into_app_result() {
        Ok(()) => {
            tracing::debug!("app finished");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!("app failed: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn heartbeat(link: std::sync::Arc<Link>) {
    let mut ticks = tokio::time::interval(HEARTBEAT_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        link.send(&ToMaster::Heartbeat);
    }
}

/// SIGTERM and SIGINT start a graceful stop instead of killing the process (a Ctrl-C in
/// a terminal reaches every worker as well as the master, which coordinates the stop).
pub(crate) fn stop_on_signals(worker: Worker) -> std::io::Result<()> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM: stopping gracefully"),
                _ = int.recv() => tracing::info!("SIGINT: stopping gracefully"),
            }
            worker.begin_shutdown();
        }
    });
    Ok(())
}
