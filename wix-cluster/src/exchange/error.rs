//! What can go wrong when exchanging messages.

use std::fmt;
use std::time::Duration;

use crate::WorkerId;

/// Why an exchange call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExchangeError {
    /// No cluster runs in this process (the call was made outside `Cluster::run`).
    NotRunning,
    /// Only the master (or the one process of single-process mode) can do this.
    MasterOnly {
        /// The operation.
        what: &'static str,
    },
    /// Two different types claimed the same topic.
    TopicClash {
        /// The topic.
        topic: &'static str,
        /// The type that claimed it first.
        first: &'static str,
        /// The type that tried to claim it too.
        second: &'static str,
    },
    /// A request handler is already registered for the topic.
    HandlerExists {
        /// The topic.
        topic: &'static str,
    },
    /// The request got no answer in time.
    Timeout {
        /// The topic.
        topic: &'static str,
        /// How long it waited.
        after: Duration,
    },
    /// The master has no handler for the request's topic, or the handler failed.
    Handler {
        /// The topic.
        topic: String,
        /// What went wrong.
        message: String,
    },
    /// A message could not be encoded.
    Encode {
        /// The topic.
        topic: &'static str,
        /// The encoder's complaint.
        message: String,
    },
    /// An answer could not be decoded as the expected type.
    Decode {
        /// The topic.
        topic: &'static str,
        /// The decoder's complaint.
        message: String,
    },
    /// No worker runs in that slot.
    UnknownWorker(WorkerId),
    /// The channel to the master is closed (the worker is going away).
    Closed,
    /// The channel to the master holds `queued` bytes this worker sent and the master
    /// has not read yet (more than 160 MiB): the master does not keep up. Try later.
    Backlog {
        /// Bytes waiting.
        queued: usize,
    },
    /// The message (or app data) is larger than the exchange carries.
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

impl fmt::Display for ExchangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExchangeError::Backlog { queued } => write!(
                f,
                "{queued} bytes sent to the master wait unread: it does not keep up; try later"
            ),
            ExchangeError::TooLarge { what, size, limit } => write!(
                f,
                "the {what} is {size} bytes, more than the exchange carries ({limit} bytes)"
            ),
            ExchangeError::NotRunning => f.write_str("no wix-cluster runs in this process"),
            ExchangeError::MasterOnly { what } => {
                write!(f, "{what} is only possible in the master")
            }
            ExchangeError::TopicClash {
                topic,
                first,
                second,
            } => write!(
                f,
                "topic {topic:?} is used by both {first} and {second}; give each type its own topic"
            ),
            ExchangeError::HandlerExists { topic } => {
                write!(
                    f,
                    "a request handler for topic {topic:?} is already registered"
                )
            }
            ExchangeError::Timeout { topic, after } => {
                write!(
                    f,
                    "request on topic {topic:?} got no answer within {after:?}"
                )
            }
            ExchangeError::Handler { topic, message } => {
                write!(f, "request on topic {topic:?} failed: {message}")
            }
            ExchangeError::Encode { topic, message } => {
                write!(f, "cannot encode a message on topic {topic:?}: {message}")
            }
            ExchangeError::Decode { topic, message } => {
                write!(f, "cannot decode a message on topic {topic:?}: {message}")
            }
            ExchangeError::UnknownWorker(id) => write!(f, "no worker {id} is running"),
            ExchangeError::Closed => f.write_str("the channel to the master is closed"),
        }
    }
}

impl std::error::Error for ExchangeError {}
