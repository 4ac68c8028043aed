//! `Worker::shutdown()` does not borrow the worker: written the natural way in an axum
//! WebSocket handler, the stop future is taken in the route's closure and moved into
//! `on_upgrade`, which needs it `'static`.

use axum::extract::ws::{Message, WebSocketUpgrade};

#[wix_cluster::main(workers = 1)]
async fn main(worker: wix_cluster::Worker) -> std::io::Result<()> {
    let handle = worker.clone();
    let _app: axum::Router = axum::Router::new().route(
        "/ws",
        axum::routing::get(move |ws: WebSocketUpgrade| {
            let stop = handle.shutdown();
            async move {
                ws.on_upgrade(move |mut socket| async move {
                    stop.await;
                    let _ = socket.send(Message::Close(None)).await;
                })
            }
        }),
    );
    Ok(())
}
