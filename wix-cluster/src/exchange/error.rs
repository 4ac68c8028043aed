//! What can go wrong when exchanging messages.

use std::time::Duration;

use crate::WorkerId;

/// Why an exchange call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExchangeError {
    /// No cluster runs in this process (the call was made outside `Cluster::run`).
    #[error("no wix-cluster runs in this process")]
    NotRunning,
    /// Only the master (or the one process of single-process mode) can do this.
    #[error("{what} is only possible in the master")]
    MasterOnly {
        /// The operation.
        what: &'static str,
    },
    /// Two different types claimed the same topic.
    #[error("topic {topic:?} is used by both {first} and {second}; give each type its own topic")]
    TopicClash {
        /// The topic.
        topic: &'static str,
        /// The type that claimed it first.
        first: &'static str,
        /// The type that tried to claim it too.
        second: &'static str,
    },
    /// The topic starts with `wix_cluster.`, which wix-cluster keeps for its own
    /// messages ([`RESERVED_PREFIX`]).
    ///
    /// [`RESERVED_PREFIX`]: crate::exchange::RESERVED_PREFIX
    #[error(
        "topic {topic:?} is reserved: topics starting with \"wix_cluster.\" are wix-cluster's own"
    )]
    ReservedTopic {
        /// The topic.
        topic: &'static str,
    },
    /// A request handler is already registered for the topic.
    #[error("a request handler for topic {topic:?} is already registered")]
    HandlerExists {
        /// The topic.
        topic: &'static str,
    },
    /// The request got no answer in time.
    #[error("request on topic {topic:?} got no answer within {after:?}")]
    Timeout {
        /// The topic.
        topic: &'static str,
        /// How long it waited.
        after: Duration,
    },
    /// The master has no handler for the request's topic, or the handler failed.
    #[error("request on topic {topic:?} failed: {message}")]
    Handler {
        /// The topic.
        topic: String,
        /// What went wrong.
        message: String,
    },
    /// A message could not be encoded.
    #[error("cannot encode a message on topic {topic:?}: {message}")]
    Encode {
        /// The topic.
        topic: &'static str,
        /// The encoder's complaint.
        message: String,
    },
    /// An answer could not be decoded as the expected type.
    #[error("cannot decode a message on topic {topic:?}: {message}")]
    Decode {
        /// The topic.
        topic: &'static str,
        /// The decoder's complaint.
        message: String,
    },
    /// No worker runs in that slot.
    #[error("no worker {0} is running")]
    UnknownWorker(WorkerId),
    /// The channel to the master is closed (the worker is going away).
    #[error("the channel to the master is closed")]
    Closed,
    /// The channel holds `queued` bytes sent and not read yet, and the message does not
    /// fit within 160 MiB: the other side does not keep up, and nothing was queued. In a
    /// worker, the master does not read (try later); in the master (`broadcast`,
    /// `send_to`), a worker does not, and missed the message (the other workers have a
    /// broadcast; the master soon replaces a worker that stays behind).
    #[error("{queued} bytes wait unread on the channel: the other side does not keep up")]
    Backlog {
        /// Bytes waiting.
        queued: usize,
    },
    /// The message (or app data) is larger than the exchange carries.
    #[error("the {what} is {size} bytes, more than the exchange carries ({limit} bytes)")]
    TooLarge {
        /// What was too large: `"message"`, `"app data"`.
        what: &'static str,
        /// Its encoded size, in bytes.
        size: usize,
        /// The limit, in bytes ([`MAX_MESSAGE_BYTES`], [`MAX_APP_DATA_BYTES`]).
        ///
        /// [`MAX_MESSAGE_BYTES`]: crate::exchange::MAX_MESSAGE_BYTES
        /// [`MAX_APP_DATA_BYTES`]: crate::exchange::MAX_APP_DATA_BYTES
        limit: usize,
    },
}
