//! [`Subscription`]: the messages of one topic, decoded.

use std::marker::PhantomData;

use tokio::sync::mpsc;

use super::hub::{Envelope, Hub};
use super::{Exchange, Peer};

/// The messages on `T`'s topic, from [`T::subscribe()`](super::Exchange). In a worker:
/// what the master broadcasts or sends to it; in the master: what every worker sends
/// (and the master's own broadcasts); in single-process mode: all of it.
///
/// A message that does not decode as `T` is logged with its topic, counted, and
/// skipped.
pub struct Subscription<T> {
    pub(super) rx: mpsc::UnboundedReceiver<Envelope>,
    pub(super) hub: &'static Hub,
    pub(super) _type: PhantomData<fn() -> T>,
}

impl<T: Exchange> Subscription<T> {
    /// The next message and who sent it; `None` once the cluster is gone.
    pub async fn recv(&mut self) -> Option<(Peer, T)> {
        loop {
            let envelope = self.rx.recv().await?;
            match postcard::from_bytes::<T>(&envelope.payload) {
                Ok(message) => return Some((envelope.from, message)),
                Err(e) => self
                    .hub
                    .count_undecodable(T::TOPIC, std::any::type_name::<T>(), &e),
            }
        }
    }

    /// The next message if one is waiting.
    pub fn try_recv(&mut self) -> Option<(Peer, T)> {
        loop {
            let envelope = self.rx.try_recv().ok()?;
            match postcard::from_bytes::<T>(&envelope.payload) {
                Ok(message) => return Some((envelope.from, message)),
                Err(e) => self
                    .hub
                    .count_undecodable(T::TOPIC, std::any::type_name::<T>(), &e),
            }
        }
    }
}

impl<T> std::fmt::Debug for Subscription<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("type", &std::any::type_name::<T>())
            .finish()
    }
}
