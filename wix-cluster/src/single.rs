//! Single-process mode: the plugins and the app in one process, as worker 0. For
//! debuggers, and for environments where one process is wanted.

use std::future::Future;
use std::process::ExitCode;

use crate::app::AppResult;
use crate::config::Config;
use crate::plugin::Plugins;
use crate::worker::process::{run_app, stop_on_signals};
use crate::{Master, Worker, WorkerId};

pub(crate) fn run<F, Fut>(config: &Config, plugins: Plugins, app: F) -> ExitCode
where
    F: FnOnce(Worker) -> Fut,
    Fut: Future,
    Fut::Output: AppResult,
{
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
        crate::exchange::hub::install(crate::exchange::hub::Side::Single);
        crate::metrics::start_collector();
        let (master, mut commands) = Master::new(config);
        for plugin in &plugins {
            if let Err(e) = plugin.on_master(&master).await {
                tracing::error!("plugin {} failed to start: {e}", plugin.name());
                return ExitCode::FAILURE;
            }
        }
        crate::management::start(&master, config);
        let worker = Worker::new(
            WorkerId(0),
            0,
            None,
            Some(master.clone()),
            Some(sockets),
            master.drain_timeout(),
        );
        if let Err(e) = stop_on_signals(worker.clone(), true) {
            tracing::error!("cannot watch SIGTERM/SIGINT: {e}");
            return ExitCode::FAILURE;
        }
        // There are no other processes to manage: a shutdown request stops the app,
        // anything else is moot.
        let stopper = worker.clone();
        tokio::spawn(async move {
            while let Some(command) = commands.recv().await {
                if let crate::master::Command::Shutdown { .. } = command {
                    stopper.begin_shutdown();
                }
            }
        });
        run_app(&plugins, worker, app).await
    });
    runtime.shutdown_background();
    code
}
