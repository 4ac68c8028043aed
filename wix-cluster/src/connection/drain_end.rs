//! [`DrainEnd`]: the end of a drain's budget, told to the gRPC responses still
//! streaming so that each ends with a status instead of being cut.
//!
//! At the drain timeout [`crate::http::serve`] gives up on the connections left, and
//! the worker exits: a gRPC server-streaming call still running would end with a reset
//! stream or a closed connection, which a client sees as a transport error (retried or
//! not, depending on the client, and never with a reason). Just before that, `serve`
//! [fires](DrainEnd::fire) its `DrainEnd`, and every gRPC response body still being
//! sent ends with a trailers frame, `grpc-status: 14` (UNAVAILABLE) and a
//! `grpc-message` saying the worker is draining: a clean end of the call that clients
//! treat as retryable, and that they retry on another worker.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Context;

use tokio::sync::Notify;
use tokio::sync::futures::OwnedNotified;

/// The signal a server fires once its drain budget is over (shared by its connections).
#[derive(Clone, Default)]
pub(crate) struct DrainEnd {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Set before the waiters are notified: a response made after the firing sees it.
    fired: AtomicBool,
    notify: Arc<Notify>,
}

impl DrainEnd {
    pub(crate) fn new() -> DrainEnd {
        DrainEnd::default()
    }

    /// The drain budget is over: every gRPC response still streaming ends now.
    pub(crate) fn fire(&self) {
        self.inner.fired.store(true, Ordering::Release);
        self.inner.notify.notify_waiters();
    }

    /// What a response polls beside its body, for a response that is gRPC (its
    /// `content-type` starts with `application/grpc`); `None` for any other, gRPC-Web's
    /// included (`application/grpc-web...`: its status travels in the body, not in
    /// HTTP trailers).
    pub(crate) fn watch<B>(&self, response: &http::Response<B>) -> Option<Ending> {
        let grpc = response
            .headers()
            .get(http::header::CONTENT_TYPE)
            .map(http::HeaderValue::as_bytes)
            .is_some_and(|kind| {
                kind.starts_with(b"application/grpc") && !kind.starts_with(b"application/grpc-web")
            });
        grpc.then(|| Ending {
            // Made before the flag is read: a firing in between completes it.
            notified: Box::pin(self.inner.notify.clone().notified_owned()),
            inner: self.inner.clone(),
        })
    }
}

/// One gRPC response's view of the [`DrainEnd`].
pub(crate) struct Ending {
    notified: Pin<Box<OwnedNotified>>,
    inner: Arc<Inner>,
}

impl Ending {
    /// The trailers that end the response when the drain budget is over. With `cx`
    /// (the body has no frame ready) the response is woken when it ends; without, it
    /// only reads the flag (one atomic load per frame of a busy stream).
    pub(crate) fn trailers(&mut self, cx: Option<&mut Context<'_>>) -> Option<http::HeaderMap> {
        let fired = self.inner.fired.load(Ordering::Acquire)
            || cx.is_some_and(|cx| self.notified.as_mut().poll(cx).is_ready());
        fired.then(unavailable)
    }
}

/// `grpc-status: 14` (UNAVAILABLE) with its message.
fn unavailable() -> http::HeaderMap {
    let mut trailers = http::HeaderMap::with_capacity(2);
    trailers.insert("grpc-status", http::HeaderValue::from_static("14"));
    trailers.insert(
        "grpc-message",
        http::HeaderValue::from_static(
            "the worker is draining (its drain timeout is over): retry on another",
        ),
    );
    trailers
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(kind: &str) -> http::Response<()> {
        http::Response::builder()
            .header(http::header::CONTENT_TYPE, kind)
            .body(())
            .unwrap()
    }

    #[test]
    fn only_grpc_responses_are_watched() {
        let end = DrainEnd::new();
        assert!(end.watch(&response("application/grpc")).is_some());
        assert!(end.watch(&response("application/grpc+proto")).is_some());
        assert!(end.watch(&response("application/grpc-web+proto")).is_none());
        assert!(end.watch(&response("text/event-stream")).is_none());
        assert!(end.watch(&http::Response::new(())).is_none());
    }

    #[test]
    fn a_response_ends_unavailable_once_fired_whether_made_before_or_after() {
        let end = DrainEnd::new();
        let mut before = end.watch(&response("application/grpc")).unwrap();
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(before.trailers(Some(&mut cx)).is_none());
        assert!(before.trailers(None).is_none());
        end.fire();
        let trailers = before.trailers(Some(&mut cx)).expect("ended once fired");
        assert_eq!(trailers["grpc-status"], "14");
        assert!(
            trailers["grpc-message"]
                .to_str()
                .unwrap()
                .contains("draining")
        );
        let mut after = end.watch(&response("application/grpc")).unwrap();
        assert!(after.trailers(None).is_some());
    }
}
