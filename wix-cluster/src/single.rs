//! Single-process mode: the plugins and the app in one process, as worker 0. For
//! debuggers, and for environments where one process is wanted.

use std::future::Future;
use std::process::ExitCode;
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

use crate::app::AppResult;
use crate::config::Config;
use crate::master::Command;
use crate::plugin::Plugins;
use crate::worker::Mode;
use crate::worker::process::run_app;
use crate::{Master, Worker, WorkerId};

pub(crate) fn run<F, Fut>(config: &Config, plugins: Plugins, app: F) -> ExitCode
where
    F: FnOnce(Worker) -> Fut,
    Fut: Future,
    Fut::Output: AppResult,
{
    crate::limits::raise_nofile();
    // Sockets from systemd's socket activation, adopted before any thread exists.
    let sockets = crate::master::listeners::Listeners::adopt_activated();
    let runtime = match crate::runtime::worker(config) {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(async {
        tracing::info!("running in single-process mode");
        let (master, commands) = Master::new(config);
        let mode = Mode::single(master.clone(), sockets);
        crate::exchange::hub::install(mode.hub_side());
        crate::metrics::start_collector(
            &config.metrics,
            crate::metrics::Origin::Worker(WorkerId(0)),
        );
        for plugin in &plugins {
            if let Err(e) = plugin.on_master(&master).await {
                tracing::error!("plugin {} failed to start: {e}", plugin.name());
                return ExitCode::FAILURE;
            }
        }
        // Serving for the life of the process; its discovery file goes with it.
        let _management = crate::management::start(&master, config);
        let worker = Worker::new(
            WorkerId(0),
            0,
            mode,
            master.drain_timeout(),
            config.timeouts,
        );
        let delay = config.drain_delay.unwrap_or(master.drain_delay());
        let asked = match stop_requests(commands) {
            Ok(asked) => asked,
            Err(e) => {
                tracing::error!("cannot watch signals: {e}");
                return ExitCode::FAILURE;
            }
        };
        tokio::spawn(stop(asked, master, worker.clone(), delay));
        run_app(&plugins, worker, app).await
    });
    runtime.shutdown_background();
    code
}

/// What asks the one process to stop: SIGTERM, SIGQUIT, SIGINT (a Ctrl-C reaches only
/// it), or [`Master::shutdown`]. Every other command is moot, and so are the master-only
/// signals (ignored): there are no other processes.
struct StopRequests {
    stop: crate::signals::StopSignals,
    int: tokio::signal::unix::Signal,
    commands: mpsc::UnboundedReceiver<Command>,
}

fn stop_requests(commands: mpsc::UnboundedReceiver<Command>) -> std::io::Result<StopRequests> {
    crate::signals::ignore(&crate::signals::MASTER_ONLY)?;
    Ok(StopRequests {
        stop: crate::signals::StopSignals::watch()?,
        int: signal(SignalKind::interrupt())?,
        commands,
    })
}

impl StopRequests {
    /// The next request, by name.
    async fn next(&mut self) -> &'static str {
        loop {
            tokio::select! {
                name = self.stop.recv() => return name,
                _ = self.int.recv() => return "SIGINT",
                command = self.commands.recv() => match command {
                    Some(Command::Shutdown { .. }) => return "a shutdown request",
                    Some(_) => {}
                    // No handle left: only the signals can still ask.
                    None => return self.signal().await,
                },
            }
        }
    }

    async fn signal(&mut self) -> &'static str {
        tokio::select! {
            name = self.stop.recv() => name,
            _ = self.int.recv() => "SIGINT",
        }
    }
}

/// As a master does: at the first request `/health/ready` answers 503 at once, the app
/// keeps serving for the drain delay (a second request cuts it short), then drains.
async fn stop(mut asked: StopRequests, master: Master, worker: Worker, delay: Duration) {
    let why = asked.next().await;
    master.set_stopping();
    if delay.is_zero() {
        tracing::info!("{why}: stopping gracefully");
    } else {
        tracing::info!("{why}: not ready from now on; serving for {delay:?}, then draining");
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            again = asked.next() => tracing::info!("{again} during the drain delay: draining now"),
        }
    }
    worker.going_down(format!("got {why}"));
}
