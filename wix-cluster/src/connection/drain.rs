//! [`Drain`]: the connections of one server, counted by kind, and told when the server
//! drains.
//!
//! Every connection holds a [`Member`] for as long as its socket is open, upgraded
//! (WebSocket) connections included: hyper hands the socket to the upgrade and forgets
//! the connection, and hyper-util's graceful shutdown with it, but the socket keeps the
//! member. So [`Drain::finished`] resolves when the last socket is closed, not when the
//! last HTTP exchange ended.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

use tokio::sync::watch;

/// What a connection carries, as far as it is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Kind {
    /// No request read yet.
    Unknown = 0,
    /// HTTP/1.x.
    Http1 = 1,
    /// HTTP/2.
    Http2 = 2,
    /// Upgraded out of HTTP (a WebSocket, most often): the app owns the socket.
    Upgraded = 3,
}

impl Kind {
    fn from_u8(kind: u8) -> Kind {
        match kind {
            1 => Kind::Http1,
            2 => Kind::Http2,
            3 => Kind::Upgraded,
            _ => Kind::Unknown,
        }
    }
}

/// Open connections by kind (indexed by [`Kind`] as `usize`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Open {
    /// Accepted, no request read yet.
    pub(crate) unknown: usize,
    /// HTTP/1.x.
    pub(crate) http1: usize,
    /// HTTP/2.
    pub(crate) http2: usize,
    /// Upgraded (WebSockets).
    pub(crate) upgraded: usize,
}

impl Open {
    /// Every open connection.
    pub(crate) fn total(&self) -> usize {
        self.unknown + self.http1 + self.http2 + self.upgraded
    }
}

struct Shared {
    by_kind: [AtomicUsize; 4],
}

impl Shared {
    fn new() -> Shared {
        Shared {
            by_kind: std::array::from_fn(|_| AtomicUsize::new(0)),
        }
    }
}

/// The counts of every app server of this process ([`Drain::for_app`]).
static APP: std::sync::LazyLock<Arc<Shared>> = std::sync::LazyLock::new(|| Arc::new(Shared::new()));

/// The connections the app's servers ([`crate::http::serve`]) of this process have
/// open, by kind: what the heartbeat reports. Those without a request yet count as
/// HTTP/1.
pub(crate) fn app_open() -> crate::OpenConnections {
    let at = |kind: Kind| APP.by_kind[kind as usize].load(Ordering::Relaxed);
    let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    crate::OpenConnections {
        http1: count(at(Kind::Http1) + at(Kind::Unknown)),
        http2: count(at(Kind::Http2)),
        upgraded: count(at(Kind::Upgraded)),
    }
}

/// A server's connections: counted by kind, told when to drain, awaited.
pub(crate) struct Drain {
    /// `true` once the server drains. Every member holds a receiver: the channel
    /// closes when the last one is gone.
    tx: watch::Sender<bool>,
    shared: Arc<Shared>,
}

impl Drain {
    /// A server's own (the management app's).
    pub(crate) fn new() -> Drain {
        Drain {
            tx: watch::Sender::new(false),
            shared: Arc::new(Shared::new()),
        }
    }

    /// An app server's: its connections also count in the process's [`app_open`].
    pub(crate) fn for_app() -> Drain {
        Drain {
            tx: watch::Sender::new(false),
            shared: APP.clone(),
        }
    }

    /// A new connection's membership, counted as [`Kind::Unknown`] until it says.
    pub(crate) fn join(&self) -> Member {
        self.shared.by_kind[Kind::Unknown as usize].fetch_add(1, Ordering::Relaxed);
        Member {
            drain: self.tx.subscribe(),
            shared: self.shared.clone(),
            kind: AtomicU8::new(Kind::Unknown as u8),
        }
    }

    /// Tells every connection, present and future, that the server drains.
    pub(crate) fn start(&self) {
        self.tx.send_replace(true);
    }

    /// The connections open now, by kind.
    pub(crate) fn open(&self) -> Open {
        let at = |kind: Kind| self.shared.by_kind[kind as usize].load(Ordering::Relaxed);
        Open {
            unknown: at(Kind::Unknown),
            http1: at(Kind::Http1),
            http2: at(Kind::Http2),
            upgraded: at(Kind::Upgraded),
        }
    }

    /// Resolves when no connection is open any more.
    pub(crate) async fn finished(&self) {
        self.tx.closed().await;
    }
}

/// One connection's membership of its [`Drain`], held by its socket.
pub(crate) struct Member {
    drain: watch::Receiver<bool>,
    shared: Arc<Shared>,
    kind: AtomicU8,
}

impl Member {
    /// What the connection carries, as far as known.
    pub(crate) fn kind(&self) -> Kind {
        Kind::from_u8(self.kind.load(Ordering::Relaxed))
    }

    /// The connection carries `kind` from now on (an upgrade; the protocol of its first
    /// request).
    pub(crate) fn set_kind(&self, kind: Kind) {
        let was = self.kind.swap(kind as u8, Ordering::Relaxed);
        if was != kind as u8 {
            self.shared.by_kind[usize::from(was)].fetch_sub(1, Ordering::Relaxed);
            self.shared.by_kind[kind as usize].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The drain signal, for the connection's watchdog.
    pub(crate) fn drain_signal(&self) -> watch::Receiver<bool> {
        self.drain.clone()
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        let kind = self.kind.load(Ordering::Relaxed);
        self.shared.by_kind[usize::from(kind)].fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn counts_by_kind_and_finishes_when_the_last_member_is_gone() {
        let drain = Drain::new();
        let a = drain.join();
        let b = drain.join();
        b.set_kind(Kind::Http2);
        a.set_kind(Kind::Http1);
        a.set_kind(Kind::Upgraded);
        assert_eq!(
            drain.open(),
            Open {
                unknown: 0,
                http1: 0,
                http2: 1,
                upgraded: 1
            }
        );
        let mut signal = a.drain_signal();
        drain.start();
        assert!(*signal.borrow_and_update());
        drop(signal);
        drop(b);
        let waiting = tokio::time::timeout(std::time::Duration::from_millis(20), drain.finished());
        assert!(waiting.await.is_err(), "one member is still open");
        drop(a);
        drain.finished().await;
        assert_eq!(drain.open().total(), 0);
    }
}
