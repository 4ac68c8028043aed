//! A test fixture: a plugin whose master hook fails, which must stop start-up before any
//! worker is spawned. Set `GREETING` to let it start.

use wix_cluster::{Master, Plugin, PluginError};

/// Loads a setting in the master; fails when it is missing.
#[derive(Default)]
struct NeedsGreeting;

impl Plugin for NeedsGreeting {
    fn name(&self) -> &str {
        "NeedsGreeting"
    }

    async fn on_master(&self, _master: &Master) -> Result<(), PluginError> {
        let greeting = std::env::var("GREETING").map_err(|_| "GREETING is not set")?;
        tracing::info!("greeting: {greeting}");
        Ok(())
    }
}

#[wix_cluster::main(workers = 2, plugins(NeedsGreeting))]
async fn main(worker: wix_cluster::Worker) -> std::io::Result<()> {
    let _listener = worker.listen(("127.0.0.1", 0)).await?;
    worker.shutdown().await;
    Ok(())
}
