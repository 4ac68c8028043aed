//! A plugin of the program's own: it notices every fork.
//!
//!     cargo run --example custom_plugin
//!
//! Each worker start logs `noticed a fork: worker N (pid P)`. Reads `PORT` / `HOST`
//! like `hello`.

use axum::{Router, routing::get};
use wix_cluster::{LifecycleEvent, Master, Plugin};

/// Counts and logs every worker the master forks.
#[derive(Default)]
struct ForkNotifier {
    forks: std::sync::atomic::AtomicUsize,
}

impl Plugin for ForkNotifier {
    fn on_event(&self, event: &LifecycleEvent, _master: &Master) {
        if let LifecycleEvent::Fork(worker) = event {
            let n = self
                .forks
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                + 1;
            tracing::info!("noticed a fork: {worker}, fork number {n}");
        }
    }
}

#[wix_cluster::main(plugins(ForkNotifier, Respawn, Graceful))]
async fn main(worker: wix_cluster::Worker) -> std::io::Result<()> {
    let host = std::env::var("HOST").unwrap_or_else(|_| "0.0.0.0".to_owned());
    let port = std::env::var("PORT").unwrap_or_else(|_| "8080".to_owned());
    let listener = worker.listen(format!("{host}:{port}")).await?;
    let app = Router::new().route("/", get(|| async { "Hi there" }));
    wix_cluster::http::serve(listener, app, &worker).await
}
