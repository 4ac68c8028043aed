//! The messages master and workers exchange over a worker's channel.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// Bumped on any incompatible change to the messages below. Master and worker are the
/// same binary, so a mismatch means a binary was replaced under a running master (a
/// rolling restart onto a build that speaks another version stops at its first
/// worker; a master upgrade, SIGUSR2, is the way to deploy such a build).
pub(crate) const PROTOCOL_VERSION: u32 = 7;

/// What a worker asks the master to listen on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum ListenOn {
    /// An address (bound once by the master, or a socket from systemd with it).
    Addr(SocketAddr),
    /// A socket from systemd's socket activation, by its `LISTEN_FDNAMES` name.
    Name(String),
}

impl std::fmt::Display for ListenOn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ListenOn::Addr(addr) => addr.fmt(f),
            ListenOn::Name(name) => write!(f, "the socket named {name:?}"),
        }
    }
}

/// Worker -> master.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ToMaster {
    /// First message on a new channel.
    Hello { version: u32, pid: u32 },
    /// Asks for the shared listening socket `on`; answered by [`ToWorker::Listener`]
    /// (with the descriptor) or [`ToWorker::ListenFailed`].
    Listen { request: u64, on: ListenOn },
    /// The app holds a listener and accepts connections.
    Ready,
    /// The worker's event loop is alive; `requests` served so far by its HTTP helper,
    /// and `accept_errors`: accepts that failed for lack of descriptors or memory;
    /// `load`: how busy it has been ([`crate::busy`]).
    Heartbeat {
        requests: u64,
        accept_errors: u64,
        connections: crate::OpenConnections,
        load: crate::busy::Load,
    },
    /// An exchange message for the master's subscribers on `topic` (postcard payload).
    Exchange {
        topic: String,
        #[serde(with = "serde_bytes")]
        payload: Vec<u8>,
    },
    /// An exchange request for the master's handler on `topic`; answered by
    /// [`ToWorker::Response`] with the same `id`.
    Request {
        id: u64,
        topic: String,
        #[serde(with = "serde_bytes")]
        payload: Vec<u8>,
        /// How long the worker waits for the answer: the master gives up then too.
        timeout_ms: u64,
    },
    /// The worker asks to be replaced gracefully (for example after `max_requests`):
    /// the master starts its successor, then drains it.
    Recycle { reason: String },
    /// The worker is going down on its own (its app failed or panicked, or it got a
    /// signal: `signalled`): the master replaces it now instead of after its exit.
    GoingDown { reason: String, signalled: bool },
    /// The worker's HTTP server finished its drain after `took_ms`: every connection
    /// closed, or `left` of them (`upgraded` of which upgraded) were given up on at the
    /// drain's deadline; `silent` WebSockets were closed at the deadline because their
    /// client did not answer the close frame.
    Drained {
        left: u32,
        upgraded: u32,
        silent: u32,
        took_ms: u64,
    },
}

/// Master -> worker.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ToWorker {
    /// Answer to [`ToMaster::Hello`], with how long a drain may take and the current
    /// app-scoped data (topic, payload), which the worker has before its app starts.
    Welcome {
        version: u32,
        drain_timeout_ms: u64,
        data: Vec<(String, serde_bytes::ByteBuf)>,
    },
    /// An exchange message from the master on `topic`.
    Exchange {
        topic: String,
        #[serde(with = "serde_bytes")]
        payload: Vec<u8>,
    },
    /// The answer to [`ToMaster::Request`] `id`: the encoded response or why there is
    /// none.
    Response {
        id: u64,
        result: Result<serde_bytes::ByteBuf, String>,
    },
    /// A new value of the app-scoped data on `topic`.
    Data {
        topic: String,
        #[serde(with = "serde_bytes")]
        payload: Vec<u8>,
    },
    /// The listening socket for a [`ToMaster::Listen`]; its descriptor travels with
    /// this frame. `addr` is the bound address (the real port when 0 was asked for).
    Listener { request: u64, addr: SocketAddr },
    /// The master could not bind what a [`ToMaster::Listen`] asked for.
    ListenFailed { request: u64, error: String },
    /// Stop: stop accepting, finish what is in flight, exit; `why` tells long-lived
    /// connections whether to come back.
    Shutdown { why: crate::StopReason },
    /// The drain's time is up now (too many generations of old workers drain): close
    /// what is still open and exit.
    Hurry,
}

impl ToMaster {
    /// The message's kind, for logs (which never show a payload).
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            ToMaster::Hello { .. } => "hello",
            ToMaster::Listen { .. } => "listen",
            ToMaster::Ready => "ready",
            ToMaster::Heartbeat { .. } => "heartbeat",
            ToMaster::Exchange { .. } => "exchange",
            ToMaster::Request { .. } => "request",
            ToMaster::Recycle { .. } => "recycle",
            ToMaster::GoingDown { .. } => "going-down",
            ToMaster::Drained { .. } => "drained",
        }
    }
}

impl ToWorker {
    /// The message's kind, for logs (which never show a payload).
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            ToWorker::Welcome { .. } => "welcome",
            ToWorker::Exchange { .. } => "exchange",
            ToWorker::Response { .. } => "response",
            ToWorker::Data { .. } => "app data",
            ToWorker::Listener { .. } => "listener",
            ToWorker::ListenFailed { .. } => "listen-failed",
            ToWorker::Shutdown { .. } => "shutdown",
            ToWorker::Hurry => "hurry",
        }
    }
}

/// [`ToMaster::Exchange`] or [`ToWorker::Exchange`] from borrowed parts, encoded byte
/// for byte as the owned message is (the tests check it), without copying the parts
/// into an owned message first.
pub(crate) struct ExchangeRef<'a> {
    variant: u32,
    topic: &'a str,
    payload: &'a [u8],
}

impl<'a> ExchangeRef<'a> {
    /// As [`ToMaster::Exchange`] (its index in the enum).
    pub(crate) fn to_master(topic: &'a str, payload: &'a [u8]) -> Self {
        ExchangeRef {
            variant: 4,
            topic,
            payload,
        }
    }

    /// As [`ToWorker::Exchange`] (its index in the enum).
    pub(crate) fn to_worker(topic: &'a str, payload: &'a [u8]) -> Self {
        ExchangeRef {
            variant: 1,
            topic,
            payload,
        }
    }

    /// As [`ToWorker::Data`] (its index in the enum): the same two fields.
    pub(crate) fn data(topic: &'a str, payload: &'a [u8]) -> Self {
        ExchangeRef {
            variant: 3,
            topic,
            payload,
        }
    }
}

impl Serialize for ExchangeRef<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStructVariant;
        let mut variant =
            serializer.serialize_struct_variant("Message", self.variant, "Exchange", 2)?;
        variant.serialize_field("topic", self.topic)?;
        variant.serialize_field("payload", serde_bytes::Bytes::new(self.payload))?;
        variant.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn borrowed_exchange_messages_encode_as_the_owned_ones() {
        let payload = vec![1, 2, 3, 250];
        let to_master = ToMaster::Exchange {
            topic: "metrics".into(),
            payload: payload.clone(),
        };
        let to_worker = ToWorker::Exchange {
            topic: "metrics".into(),
            payload: payload.clone(),
        };
        assert_eq!(
            postcard::to_allocvec(&ExchangeRef::to_master("metrics", &payload)).unwrap(),
            postcard::to_allocvec(&to_master).unwrap()
        );
        assert_eq!(
            postcard::to_allocvec(&ExchangeRef::to_worker("metrics", &payload)).unwrap(),
            postcard::to_allocvec(&to_worker).unwrap()
        );
        let data = ToWorker::Data {
            topic: "prices".into(),
            payload: payload.clone(),
        };
        assert_eq!(
            postcard::to_allocvec(&ExchangeRef::data("prices", &payload)).unwrap(),
            postcard::to_allocvec(&data).unwrap()
        );
    }
}
