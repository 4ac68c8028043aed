//! Request/response correlation over a channel: each request gets an id, and the
//! answer carrying that id reaches the one caller waiting for it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use tokio::sync::oneshot;

/// The requests of one channel still waiting for their answers, of type `T`. Used by
/// both kinds of request a worker makes: for a listener and on the exchange.
pub(crate) struct Correlation<T> {
    next: AtomicU64,
    waiting: Mutex<HashMap<u64, oneshot::Sender<T>>>,
}

impl<T> Default for Correlation<T> {
    fn default() -> Self {
        Correlation {
            next: AtomicU64::new(1),
            waiting: Mutex::new(HashMap::new()),
        }
    }
}

impl<T> Correlation<T> {
    /// Opens a request: its id goes in the message, and [`Awaiting::answer`] waits for
    /// what [`Correlation::complete`] hands over with that id.
    pub(crate) fn open(&self) -> Awaiting<'_, T> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (reply, answer) = oneshot::channel();
        self.waiting.lock().insert(id, reply);
        Awaiting {
            id,
            answer,
            owner: self,
        }
    }

    /// Hands `value` to the caller waiting for request `id`; gives it back when nobody
    /// waits (never asked, or the caller gave up).
    pub(crate) fn complete(&self, id: u64, value: T) -> Result<(), T> {
        match self.waiting.lock().remove(&id) {
            Some(reply) => reply.send(value),
            None => Err(value),
        }
    }
}

/// One open request of a [`Correlation`]; forgotten when dropped (its caller stopped
/// waiting: a timeout, a cancelled task).
pub(crate) struct Awaiting<'a, T> {
    id: u64,
    answer: oneshot::Receiver<T>,
    owner: &'a Correlation<T>,
}

impl<T> Awaiting<'_, T> {
    /// The id the request carries.
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// Waits for the answer; `None` if it can never come (the correlation is gone).
    pub(crate) async fn answer(mut self) -> Option<T> {
        (&mut self.answer).await.ok()
    }
}

impl<T> Drop for Awaiting<'_, T> {
    fn drop(&mut self) {
        self.owner.waiting.lock().remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_answer_reaches_the_request_with_its_id() {
        let requests = Correlation::<&str>::default();
        let first = requests.open();
        let second = requests.open();
        assert_ne!(first.id(), second.id());
        assert_eq!(requests.complete(second.id(), "two"), Ok(()));
        assert_eq!(requests.complete(first.id(), "one"), Ok(()));
        assert_eq!(second.answer().await, Some("two"));
        assert_eq!(first.answer().await, Some("one"));
    }

    #[test]
    fn an_answer_nobody_waits_for_is_given_back() {
        let requests = Correlation::<u8>::default();
        let gone = requests.open();
        let id = gone.id();
        drop(gone);
        assert_eq!(requests.complete(id, 7), Err(7));
        assert_eq!(requests.complete(id + 100, 8), Err(8));
        assert!(requests.waiting.lock().is_empty());
    }
}
