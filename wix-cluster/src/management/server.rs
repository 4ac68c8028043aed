//! Binds the management app's address and serves it for the life of the process.

use std::net::SocketAddr;

use axum::Router;
use tokio::net::TcpListener;

use super::routes::Ctx;

/// Binds `addr`, starts the sampler, and serves `app` until the runtime ends. A failure
/// to bind is logged as an error and the cluster keeps running without its management
/// app (and without sampling: nothing would read the samples).
pub(crate) async fn serve(addr: SocketAddr, ctx: Ctx, app: Router) {
    let listener = match TcpListener::bind(addr).await {
        Ok(listener) => listener,
        Err(e) => {
            tracing::error!(
                "cannot start the management app on {addr}: {e}; the cluster runs without it \
                 (set WIX_CLUSTER_MANAGEMENT_ADDR to another address, port 0 for any)"
            );
            return;
        }
    };
    let bound = listener.local_addr().unwrap_or(addr);
    let _ = ctx.bound.set(bound);
    tokio::spawn(super::stats::sample_forever(ctx.clone()));
    let prefix = &ctx.about.mount_point;
    tracing::info!(
        "management app listening on {bound} (dashboard: http://{bound}{prefix}/dashboard)"
    );
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!("the management app stopped serving: {e}");
    }
}
