//! The management app's listener: it stops accepting the moment it is told to, while
//! the connections it accepted are left alone for a moment more.
//!
//! A graceful shutdown that stops accepting and asks every connection to close at the
//! same instant would close a connection that has not delivered its first request yet
//! as idle (hyper does) — with the request unread in its buffer, so the client sees a
//! reset. An old master handing its management socket to a new one must not drop a
//! probe that way: its listener stops at the handover, and the shutdown of its
//! connections comes [`crate::http::SETTLE`] later, once such requests have landed (see
//! `server.rs`).

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A TCP listener that gives up its socket once `stop` turns true.
pub(crate) struct StopsAccepting {
    /// `None` once stopped: the descriptor is closed (the new master has its own).
    listener: Option<TcpListener>,
    /// `None` once nothing can ask any more (then it accepts for the life of the process).
    stop: Option<watch::Receiver<bool>>,
}

impl StopsAccepting {
    pub(crate) fn new(listener: TcpListener, stop: watch::Receiver<bool>) -> io::Result<Self> {
        Ok(StopsAccepting {
            listener: Some(listener),
            stop: Some(stop),
        })
    }
}

/// What woke [`StopsAccepting::accept`].
enum Next {
    /// `stop` turned true (`asked`), or its sender is gone.
    Stop {
        asked: bool,
    },
    Accepted(io::Result<(TcpStream, SocketAddr)>),
}

impl StopsAccepting {
    /// The next connection; pending for ever once stopped.
    pub(crate) async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        loop {
            let Some(listener) = &self.listener else {
                return std::future::pending().await;
            };
            let next = match &mut self.stop {
                Some(stop) => tokio::select! {
                    stopped = stop.wait_for(|stop| *stop) => Next::Stop { asked: stopped.is_ok() },
                    accepted = listener.accept() => Next::Accepted(accepted),
                },
                None => Next::Accepted(listener.accept().await),
            };
            match next {
                Next::Stop { asked: true } => {
                    tracing::debug!("the management app stopped accepting");
                    self.listener = None;
                }
                Next::Stop { asked: false } => self.stop = None,
                Next::Accepted(Ok(connection)) => return connection,
                Next::Accepted(Err(e)) if crate::http::is_per_connection(&e) => {}
                Next::Accepted(Err(e)) => {
                    // Out of descriptors or memory: back off instead of spinning.
                    tracing::warn!("the management app cannot accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}
