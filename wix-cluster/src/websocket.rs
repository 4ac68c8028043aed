//! WebSockets that close properly when their worker drains: [`Closing`].
//!
//! hyper hands an upgraded connection to the app and forgets it, so only the app can
//! close a WebSocket well. [`crate::http::serve`] counts upgraded connections in its
//! drain (it waits for them until the drain's deadline); [`Closing`] closes them:
//! when the worker starts to drain it sends a close frame, code 1012 (Service Restart)
//! for a roll, an upgrade, a recycle or a scale-down, and 1001 (Going Away) for the
//! cluster's stop ([`crate::StopReason`]), waits for the client's close, and gives up
//! at the drain's deadline ([`crate::Worker::drain_deadline`]), so the worker exits as
//! soon as its last client has gone, and never later than its drain timeout.
//!
//! One line in an axum handler:
//!
//! ```no_run
//! use axum::extract::ws::{Message, WebSocketUpgrade};
//!
//! fn app(worker: wix_cluster::Worker) -> axum::Router {
//!     axum::Router::new().route(
//!         "/echo",
//!         axum::routing::get(move |ws: WebSocketUpgrade| async move {
//!             ws.on_upgrade(move |socket| async move {
//!                 let mut socket = wix_cluster::websocket::Closing::new(socket, &worker);
//!                 while let Some(Ok(message)) = socket.recv().await {
//!                     if socket.send(message).await.is_err() {
//!                         break;
//!                     }
//!                 }
//!             })
//!         }),
//!     )
//! }
//! ```
//!
//! A socket the app does not wrap stays open until the drain's deadline, and is cut
//! then without a close frame.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::SinkExt;

use crate::{StopReason, Worker};

/// Sockets whose client did not answer the close frame by the drain's deadline: they
/// were closed then (the drain's report to the master says how many).
static GIVEN_UP: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// How many sockets were closed at the drain's deadline, their client silent.
pub(crate) fn given_up() -> u32 {
    GIVEN_UP.load(std::sync::atomic::Ordering::Relaxed)
}

/// How long before the drain's deadline a socket whose client ignores the close frame
/// is dropped, so that [`crate::http::serve`] sees it gone before it gives up.
const MARGIN: Duration = Duration::from_millis(100);

/// A WebSocket that closes itself with the right close frame when its worker drains
/// (see the [module](self)). Read with [`Closing::recv`], write with
/// [`Closing::send`].
pub struct Closing {
    socket: WebSocket,
    worker: Worker,
    stop: Pin<Box<dyn Future<Output = ()> + Send>>,
    state: State,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Serving.
    Open,
    /// The worker drains: the close frame is to be sent.
    Draining,
    /// The close frame is queued: to be flushed.
    Flushing,
    /// The close frame is sent: waiting for the client's.
    Closing,
    /// Closed: nothing more comes.
    Closed,
}

impl Closing {
    /// Wraps `socket`, which closes when `worker` drains.
    pub fn new(socket: WebSocket, worker: &Worker) -> Closing {
        Closing {
            socket,
            worker: worker.clone(),
            stop: Box::pin(worker.shutdown()),
            state: State::Open,
        }
    }

    /// The client's next message. `None` once the socket is closed: by the client, or,
    /// after the worker began to drain, when the client answered the close frame or at
    /// the drain's deadline. Messages that arrive after the close frame was sent are
    /// dropped: the client did not get an answer to them, and sends them again where it
    /// reconnects. Cancel-safe: it may be a branch of a `tokio::select!`.
    pub async fn recv(&mut self) -> Option<Result<Message, axum::Error>> {
        loop {
            match self.state {
                State::Open => {
                    tokio::select! {
                        biased;
                        () = &mut self.stop => self.state = State::Draining,
                        message = self.socket.recv() => {
                            if !matches!(message, Some(Ok(_))) {
                                self.state = State::Closed;
                            }
                            return message;
                        }
                    }
                }
                State::Draining => {
                    let code = self
                        .worker
                        .stop_reason()
                        .unwrap_or(StopReason::Restart)
                        .websocket_close_code();
                    let reason = match code {
                        1012 => "service restart: reconnect",
                        _ => "going away",
                    };
                    let frame = CloseFrame {
                        code,
                        reason: reason.into(),
                    };
                    // `feed` returns as soon as the frame is queued: cancelled, it sent
                    // nothing.
                    if self.socket.feed(Message::Close(Some(frame))).await.is_err() {
                        self.state = State::Closed;
                        return None;
                    }
                    self.state = State::Flushing;
                }
                State::Flushing => {
                    let flushed = tokio::select! {
                        flushed = self.socket.flush() => flushed.is_ok(),
                        () = self.worker.drain_time_up(MARGIN) => false,
                    };
                    if !flushed {
                        self.state = State::Closed;
                        return None;
                    }
                    self.state = State::Closing;
                }
                State::Closing => {
                    let message = tokio::select! {
                        message = self.socket.recv() => message,
                        () = self.worker.drain_time_up(MARGIN) => {
                            GIVEN_UP.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            None
                        }
                    };
                    // Data after our close frame is dropped (see above).
                    if !matches!(message, Some(Ok(ref m)) if !matches!(m, Message::Close(_))) {
                        self.state = State::Closed;
                        return None;
                    }
                }
                State::Closed => return None,
            }
        }
    }

    /// Sends `message` to the client; an error once the socket is closing (the worker
    /// drains) or closed.
    pub async fn send(&mut self, message: Message) -> Result<(), axum::Error> {
        if self.state != State::Open {
            return Err(axum::Error::new(std::io::Error::new(
                std::io::ErrorKind::NotConnected,
                "the WebSocket is closing: its worker drains",
            )));
        }
        self.socket.send(message).await
    }

    /// Whether the close frame has been (or is being) sent, or the socket is closed.
    pub fn is_closing(&self) -> bool {
        self.state != State::Open
    }

    /// The socket, to use as it is: it no longer closes by itself.
    pub fn into_inner(self) -> WebSocket {
        self.socket
    }
}

impl std::fmt::Debug for Closing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Closing")
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}
