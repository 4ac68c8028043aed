//! Typed messaging between the master and the workers, one topic per message type:
//! publish/subscribe, request/response, and app-scoped data ([`AppData`]).
//!
//! `#[wix_cluster::exchange("topic")]` on a struct or enum derives serde for it and
//! implements [`Exchange`], giving it `send`, `subscribe`, `broadcast`, `send_to`,
//! `request` and `handle` (thin wrappers over the functions of this module).

mod app_data;
mod error;
pub(crate) mod hub;
mod subscription;

use std::borrow::Borrow;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use app_data::AppData;
pub use error::ExchangeError;
use hub::hub;
pub use subscription::Subscription;

use crate::WorkerId;

/// How long [`request`] waits for the master's answer (1 s).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_millis(1000);

/// Who sent a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Peer {
    /// The master.
    Master,
    /// A worker (worker 0 in single-process mode).
    Worker(WorkerId),
}

/// A message type bound to a topic. Implemented by `#[wix_cluster::exchange("topic")]`
/// (which also derives serde); two types may not share a topic.
pub trait Exchange: Serialize + DeserializeOwned + Send + 'static {
    /// The topic: messages on other topics never reach this type's subscribers.
    const TOPIC: &'static str;
    /// What [`request`] on this type returns (`Self` unless the attribute says
    /// `response = Type`).
    type Response: Serialize + DeserializeOwned + Send + 'static;
}

/// The largest exchange message (a `send`, `broadcast`, `send_to`, request or
/// answer), encoded: 16 MiB. Larger ones are [`ExchangeError::TooLarge`]; a worker that
/// sends one anyway (bypassing these calls) is dropped.
pub const MAX_MESSAGE_BYTES: usize = 16 << 20;

/// The largest total of app data, every topic's current value encoded and added up:
/// 128 MiB. It travels to each new worker in its handshake, in parts of 1 MiB. A
/// [`AppData::publish`] past it is [`ExchangeError::TooLarge`] and changes nothing.
pub const MAX_APP_DATA_BYTES: usize = 128 << 20;

/// The prefix of the topics wix-cluster keeps for itself (its metrics travel on
/// `wix_cluster.metrics`): a type on such a topic is a compile error in
/// `#[wix_cluster::exchange]`, and [`ExchangeError::ReservedTopic`] for every call.
pub const RESERVED_PREFIX: &str = "wix_cluster.";

/// `Err(ReservedTopic)` for a topic under [`RESERVED_PREFIX`].
pub(crate) fn check_topic(topic: &'static str) -> Result<(), ExchangeError> {
    if topic.starts_with(RESERVED_PREFIX) {
        return Err(ExchangeError::ReservedTopic { topic });
    }
    Ok(())
}

/// `Err(TooLarge)` when `size` is over `limit`.
pub(crate) fn check_size(
    what: &'static str,
    size: usize,
    limit: usize,
) -> Result<(), ExchangeError> {
    if size > limit {
        return Err(ExchangeError::TooLarge { what, size, limit });
    }
    Ok(())
}

fn encode<T: Exchange>(value: &T) -> Result<Vec<u8>, ExchangeError> {
    postcard::to_allocvec(value).map_err(|e| ExchangeError::Encode {
        topic: T::TOPIC,
        message: e.to_string(),
    })
}

/// Sends `msg` to the master's subscribers (from a worker; in the master or in
/// single-process mode, to this process's subscribers).
pub fn send<T: Exchange>(msg: &T) -> Result<(), ExchangeError> {
    check_topic(T::TOPIC)?;
    send_internal(msg)
}

/// [`send`] on any topic, reserved ones included (wix-cluster's own messages).
pub(crate) fn send_internal<T: Exchange>(msg: &T) -> Result<(), ExchangeError> {
    thread_local! {
        /// Where messages are encoded on their way out: reused, so that sending costs
        /// no allocation.
        static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    let hub = hub()?;
    SCRATCH.with(|scratch| {
        let mut scratch = scratch
            .try_borrow_mut()
            .map_err(|_| ExchangeError::Encode {
                topic: T::TOPIC,
                message: "re-entered while encoding".into(),
            })?;
        scratch.clear();
        let buffer = std::mem::take(&mut *scratch);
        let buffer = postcard::to_extend(msg, buffer).map_err(|e| ExchangeError::Encode {
            topic: T::TOPIC,
            message: e.to_string(),
        })?;
        let sent = hub.send_to_master(T::TOPIC, &buffer);
        *scratch = buffer;
        sent
    })
}

/// The messages on `T`'s topic that reach this process (see [`Subscription`]).
pub fn subscribe<T: Exchange>() -> Result<Subscription<T>, ExchangeError> {
    check_topic(T::TOPIC)?;
    let hub = hub()?;
    hub.claim::<T>(T::TOPIC)?;
    Ok(Subscription {
        rx: hub.subscribe(T::TOPIC),
        hub,
        _type: PhantomData,
    })
}

/// Sends `msg` to every worker and to the master's own subscribers (master only).
///
/// A worker whose channel holds too much unread (160 MiB: it does not keep up, and the
/// master soon treats it as stalled) misses it: the call returns
/// [`ExchangeError::Backlog`] and the others have it ([`refused_messages`]).
pub fn broadcast<T: Exchange>(msg: impl Borrow<T>) -> Result<(), ExchangeError> {
    check_topic(T::TOPIC)?;
    hub()?.broadcast(T::TOPIC, encode(msg.borrow())?)
}

/// Sends `msg` to worker `worker` only (master only); [`ExchangeError::Backlog`] when
/// its channel holds too much unread.
pub fn send_to<T: Exchange>(worker: WorkerId, msg: impl Borrow<T>) -> Result<(), ExchangeError> {
    check_topic(T::TOPIC)?;
    hub()?.send_to_worker(worker, T::TOPIC, encode(msg.borrow())?)
}

/// Asks the master's handler for `T`'s topic and waits up to
/// [`DEFAULT_REQUEST_TIMEOUT`] for its answer.
pub async fn request<T: Exchange>(query: impl Borrow<T>) -> Result<T::Response, ExchangeError> {
    request_within(query, DEFAULT_REQUEST_TIMEOUT).await
}

/// [`request`] with a timeout of your choice.
pub async fn request_within<T: Exchange>(
    query: impl Borrow<T>,
    timeout: Duration,
) -> Result<T::Response, ExchangeError> {
    check_topic(T::TOPIC)?;
    let hub = hub()?;
    let payload = encode(query.borrow())?;
    let answer = tokio::time::timeout(timeout, hub.request(T::TOPIC, payload, timeout))
        .await
        .map_err(|_| ExchangeError::Timeout {
            topic: T::TOPIC,
            after: timeout,
        })??;
    postcard::from_bytes(&answer).map_err(|e| ExchangeError::Decode {
        topic: T::TOPIC,
        message: e.to_string(),
    })
}

/// Registers the master's handler for requests on `T`'s topic: it gets the sender and
/// the query, and returns the answer. One handler per topic (master, or single-process
/// mode).
pub fn handle<T, F, Fut>(handler: F) -> Result<(), ExchangeError>
where
    T: Exchange,
    F: Fn(Peer, T) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = T::Response> + Send + 'static,
{
    check_topic(T::TOPIC)?;
    let hub = hub()?;
    hub.claim::<T>(T::TOPIC)?;
    let handler = Arc::new(handler);
    hub.handle(
        T::TOPIC,
        Arc::new(move |from, payload: Vec<u8>| {
            let handler = handler.clone();
            Box::pin(async move {
                let query: T = postcard::from_bytes(&payload).map_err(|e| {
                    hub.count_undecodable(T::TOPIC, std::any::type_name::<T>(), &e);
                    format!("the query does not decode: {e}")
                })?;
                let answer = handler(from, query).await;
                postcard::to_allocvec(&answer)
                    .map_err(|e| format!("the answer does not encode: {e}"))
            })
        }),
    )
}

/// Messages on any topic that failed to decode in this process since it started (they
/// were logged and dropped).
pub fn undecodable_messages() -> u64 {
    hub().map_or(0, |hub| hub.undecodable())
}

/// Messages this process dropped since it started because one of its subscribers had
/// too many bytes waiting (64 MiB: it does not keep up; see [`Subscription`]).
pub fn dropped_messages() -> u64 {
    hub().map_or(0, |hub| hub.dropped())
}

/// Master: broadcasts and `send_to`s a worker missed since the master started because
/// its channel's backlog was full (each call that missed one returned
/// [`ExchangeError::Backlog`]). Also in `/metrics`, as
/// `wix_cluster_exchange_backlog_refused_total`.
pub fn refused_messages() -> u64 {
    hub().map_or(0, |hub| hub.refused())
}

/// Broadcasts raw bytes on `topic`, bypassing the types (see [`send_raw`]).
pub(crate) fn broadcast_raw(topic: &str, payload: Vec<u8>) -> Result<(), ExchangeError> {
    hub()?.broadcast(topic, payload)
}

/// Sends raw bytes as a message on `topic`, bypassing the types (and the reserved
/// prefix): for tests of what happens to a payload that does not decode, or a forged
/// one. Reached through `__private`.
pub(crate) fn send_raw(topic: &str, payload: Vec<u8>) -> Result<(), ExchangeError> {
    hub()?.send_to_master(topic, &payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_under_the_reserved_prefix_are_refused() {
        assert_eq!(
            check_topic("wix_cluster.metrics"),
            Err(ExchangeError::ReservedTopic {
                topic: "wix_cluster.metrics"
            })
        );
        assert!(check_topic("wix_cluster.anything").is_err());
        assert_eq!(check_topic("wix_clusterish"), Ok(()));
        assert_eq!(check_topic("prices"), Ok(()));
    }
}
