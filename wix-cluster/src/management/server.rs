//! Binds the management app's address (or takes the socket an upgrade handed over) and
//! serves it for the life of the process.

use std::net::SocketAddr;

use axum::Router;
use tokio::net::TcpListener;

use std::os::fd::AsRawFd;
use tower_service::Service;

use super::delivery::Socket;
use super::listener::StopsAccepting;
use super::routes::Ctx;
use crate::connection::{Registry, Timeouts};

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

/// How many connections the management app keeps open at once. At the cap, the oldest
/// connection with no request in flight is closed to make room, so that health probes
/// keep being answered while something holds many connections open.
pub(crate) const MAX_CONNECTIONS: usize = 256;

/// Starts the sampler and serves `app` on `listener` until the runtime ends or `stop`
/// turns true (then it accepts nothing more, and answers what it accepted). Every
/// connection has the `timeouts` of the app's server.
pub(crate) async fn serve(
    listener: std::net::TcpListener,
    ctx: Ctx,
    app: Router,
    mut stop: tokio::sync::watch::Receiver<bool>,
    timeouts: Timeouts,
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
    tokio::spawn(super::traffic::sample_forever(ctx.clone()));
    let prefix = &ctx.about.mount_point;
    tracing::info!(
        "management app listening on {bound} (dashboard: http://{bound}{prefix}/dashboard)"
    );
    let mut listener = match StopsAccepting::new(listener, stop.clone()) {
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
    };
    tokio::pin!(stopped);
    let drain = crate::connection::drain::Drain::new();
    let builder = crate::connection::builder(timeouts);
    let registry = Registry::new(MAX_CONNECTIONS);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut stopped => break,
            accepted = listener.accept() => accepted,
        };
        let _ = stream.set_nodelay(true);
        // Every request knows its connection's socket: an event stream watches whether
        // its client takes what is sent.
        let socket = Socket {
            fd: stream.as_raw_fd(),
            peer,
        };
        let app = app.clone();
        let service =
            hyper::service::service_fn(move |mut request: http::Request<axum::body::Body>| {
                request.extensions_mut().insert(socket);
                let mut app = app.clone();
                async move { app.call(request).await }
            });
        crate::connection::spawn(
            stream,
            service,
            &builder,
            &drain,
            timeouts,
            Some(&registry),
            None,
        );
    }
    // The listener stopped at once; the connections it accepted just before get a
    // moment to deliver their request before the idle ones are closed (`SETTLE`, in
    // each connection's drain).
    drain.start();
    drain.finished().await;
}
