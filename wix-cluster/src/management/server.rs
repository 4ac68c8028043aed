//! Binds the management app's address (or takes the socket an upgrade handed over) and
//! serves it for the life of the process.

use std::net::SocketAddr;

use axum::Router;
use tokio::net::TcpListener;

use super::listener::StopsAccepting;
use super::routes::Ctx;

/// Binds `addr` for the management app. A failure is logged as an error and the
/// cluster keeps running without its management app.
pub(crate) fn bind(addr: SocketAddr) -> Option<std::net::TcpListener> {
    match std::net::TcpListener::bind(addr) {
        Ok(listener) => Some(listener),
        Err(e) => {
            tracing::error!(
                "cannot start the management app on {addr}: {e}; the cluster runs without it \
                 (set WIX_CLUSTER_MANAGEMENT_ADDR to another address, port 0 for any)"
            );
            None
        }
    }
}

/// Starts the sampler and serves `app` on `listener` until the runtime ends or `stop`
/// turns true (then it accepts nothing more, and answers what it accepted).
pub(crate) async fn serve(
    listener: std::net::TcpListener,
    ctx: Ctx,
    app: Router,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let listener = match listener
        .set_nonblocking(true)
        .and_then(|()| TcpListener::from_std(listener))
    {
        Ok(listener) => listener,
        Err(e) => {
            tracing::error!("cannot serve the management app: {e}");
            return;
        }
    };
    let Ok(bound) = listener.local_addr() else {
        tracing::error!("the management app's socket has no address");
        return;
    };
    let _ = ctx.bound.set(bound);
    tokio::spawn(super::stats::sample_forever(ctx.clone()));
    let prefix = &ctx.about.mount_point;
    tracing::info!(
        "management app listening on {bound} (dashboard: http://{bound}{prefix}/dashboard)"
    );
    let listener = match StopsAccepting::new(listener, stop.clone()) {
        Ok(listener) => listener,
        Err(e) => {
            tracing::error!("cannot serve the management app: {e}");
            return;
        }
    };
    let stopped = async move {
        // Without a sender left, nothing will ask: serve on.
        if stop.wait_for(|stop| *stop).await.is_err() {
            std::future::pending::<()>().await;
        }
        // The listener stopped at once; the connections it accepted just before get a
        // moment to deliver their request before axum closes the idle ones.
        tokio::time::sleep(crate::http::SETTLE).await;
    };
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(stopped)
        .await
    {
        tracing::error!("the management app stopped serving: {e}");
    }
}
