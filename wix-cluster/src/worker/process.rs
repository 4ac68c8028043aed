//! A worker process from start to exit: die with the master, connect, run the plugins'
//! worker hooks, run the app, exit with its outcome.

use std::future::Future;
use std::process::ExitCode;
use std::time::Duration;

use tokio::signal::unix::SignalKind;

use super::link::{Connected, Link};
use super::panic::CatchUnwind;
use super::{Mode, Worker};
use crate::app::AppResult;
use crate::config::Config;
use crate::plugin::Plugins;
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
    if let Err(e) = crate::signals::release_in_worker() {
        tracing::warn!("cannot unblock the signals a worker ignores: {e}");
    }
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
    let code = runtime.block_on(serve(marker, plugins, config, app));
    // Tasks the app left behind (blocking ones included) must not hold up the exit.
    runtime.shutdown_background();
    code
}

async fn serve<F, Fut>(marker: WorkerMarker, plugins: Plugins, config: &Config, app: F) -> ExitCode
where
    F: FnOnce(Worker) -> Fut,
    Fut: Future,
    Fut::Output: AppResult,
{
    let Connected {
        link,
        reader,
        drain_timeout,
        data,
    } = match Link::connect(marker.channel).await {
        Ok(connected) => connected,
        Err(e) => {
            tracing::error!("cannot reach the master: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mode = Mode::Cluster { link: link.clone() };
    // The exchange works, and the app-scoped data is there, before any plugin or app
    // code runs.
    let hub = crate::exchange::hub::install(mode.hub_side());
    let worker = Worker::new(
        marker.id,
        marker.generation,
        mode,
        drain_timeout,
        config.timeouts,
    );
    for (topic, payload) in data {
        hub.set_data(&topic, payload, None);
    }
    crate::metrics::start_worker(&config.metrics, marker.metrics);
    if let Some((board, slot)) = marker.board {
        crate::fair_share::gate::join(board, slot, config.accept_wait);
    }
    let on_stop = worker.clone();
    tokio::spawn(link.clone().read_loop(reader, hub, move |why| match why {
        Some(why) => on_stop.begin_shutdown(why),
        None => on_stop.hurry(),
    }));
    tokio::spawn(heartbeat(worker.clone()));
    if let Err(e) = stop_on_signals(worker.clone()) {
        tracing::warn!("cannot watch signals: {e}");
    }
    super::panic::install_hook(worker.clone());
    let code = run_app(&plugins, worker.clone(), app).await;
    crate::metrics::flush_worker();
    worker.flush().await;
    code
}

/// Runs the plugins' worker hooks, then the app; shared with single-process mode. A
/// failure is announced to the master (see [`Worker::going_down`]).
pub(crate) async fn run_app<F, Fut>(plugins: &Plugins, worker: Worker, app: F) -> ExitCode
where
    F: FnOnce(Worker) -> Fut,
    Fut: Future,
    Fut::Output: AppResult,
{
    for plugin in plugins {
        if let Err(e) = plugin.on_worker(&worker).await {
            let reason = format!(
                "plugin {} failed to start in the worker: {e}",
                plugin.name()
            );
            tracing::error!("{reason}");
            worker.going_down(reason);
            return ExitCode::FAILURE;
        }
    }
    match CatchUnwind(app(worker.clone())).await {
        Ok(outcome) => match outcome.into_app_result() {
            Ok(()) => {
                tracing::debug!("app finished");
                ExitCode::SUCCESS
            }
            Err(e) => {
                tracing::error!("app failed: {e}");
                worker.going_down(e);
                ExitCode::FAILURE
            }
        },
        // The panic hook has announced it already.
        Err(()) => ExitCode::from(101),
    }
}

async fn heartbeat(worker: Worker) {
    let mut ticks = tokio::time::interval(HEARTBEAT_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let due = ticks.tick().await;
        // How late the tick ran: the event loop's lag, as the heartbeat sees it.
        let lag = tokio::time::Instant::now().saturating_duration_since(due);
        ::metrics::histogram!(crate::metrics::EVENT_LOOP_LAG).record(lag.as_secs_f64());
        crate::busy::lagged(lag);
        worker.send_heartbeat();
    }
}

/// SIGTERM and SIGQUIT start a graceful stop instead of killing the process. A worker
/// ignores SIGINT (sent to every process, say by `systemctl kill --signal=INT`, it is
/// the master that coordinates the stop) and the master-only signals (see `crate::signals`).
fn stop_on_signals(worker: Worker) -> std::io::Result<()> {
    let mut stop = crate::signals::StopSignals::watch()?;
    crate::signals::ignore(&[SignalKind::interrupt()])?;
    crate::signals::ignore(&crate::signals::MASTER_ONLY)?;
    tokio::spawn(async move {
        loop {
            let name = stop.recv().await;
            if !worker.is_shutting_down() {
                tracing::info!("{name}: stopping gracefully");
                worker.signalled_down(name);
            }
        }
    });
    Ok(())
}
