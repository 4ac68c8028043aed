//! One accepted HTTP connection, served with the two timeouts every server of ours
//! applies (the app's [`crate::http::serve`] and the management app), draining or not:
//!
//! - **header read**: a request head must arrive whole within it, counted from the
//!   connection's accept for its first request and from the head's first byte on a
//!   kept-alive connection (a slowloris that sends a head byte by byte, or nothing, is
//!   closed);
//! - **idle**: a connection with no request in flight and no byte read or written for
//!   that long is closed (a keep-alive connection nobody uses; a client that stopped
//!   reading its response).
//!
//! hyper has a header-read timeout of its own, but not during hyper-util's protocol
//! detection, nor an idle one: a watchdog per connection does both, from what the
//! connection's IO and service see. A registry (the management app's) caps how many
//! connections are open at once: at the cap, the oldest connection with no request in
//! flight is closed to make room, so that fresh probes keep being answered during an
//! attack.

use parking_lot::Mutex;
use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::Instant;

/// How long a connection may take to deliver a request head, and stay idle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Timeouts {
    pub(crate) header_read: Duration,
    pub(crate) idle: Duration,
}

/// No head being read.
const NONE: u64 = u64::MAX;

/// What a connection's watchdog reads, written by its IO and its service.
struct Activity {
    epoch: Instant,
    /// Milliseconds since `epoch` of the last byte read or written, or of the last
    /// response.
    last_io: AtomicU64,
    /// Milliseconds since `epoch` when the head being read began; [`NONE`] when none is.
    head_since: AtomicU64,
    in_flight: AtomicUsize,
    evict: Notify,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            epoch: Instant::now(),
            last_io: AtomicU64::new(0),
            // A new connection is waiting for its first head from the start.
            head_since: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            evict: Notify::new(),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(NONE - 1)
    }

    fn read(&self) {
        let now = self.now();
        self.last_io.store(now, Ordering::Relaxed);
        if self.in_flight.load(Ordering::Relaxed) == 0 {
            let _ =
                self.head_since
                    .compare_exchange(NONE, now, Ordering::Relaxed, Ordering::Relaxed);
        }
    }

    fn wrote(&self) {
        self.last_io.store(self.now(), Ordering::Relaxed);
    }

    fn request_started(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.head_since.store(NONE, Ordering::Relaxed);
    }

    fn request_ended(&self) {
        self.last_io.store(self.now(), Ordering::Relaxed);
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    /// No request in flight: a candidate for eviction.
    fn is_waiting(&self) -> bool {
        self.in_flight.load(Ordering::Relaxed) == 0
    }
}

/// Resolves when the connection should be closed, saying why.
async fn watchdog(activity: &Activity, timeouts: Timeouts) -> &'static str {
    let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(NONE - 1);
    let (header, idle) = (millis(timeouts.header_read), millis(timeouts.idle));
    let recheck = header.min(idle).max(1);
    loop {
        let now = activity.now();
        let head_since = activity.head_since.load(Ordering::Relaxed);
        let (deadline, why) = if activity.in_flight.load(Ordering::Relaxed) > 0 {
            (now.saturating_add(recheck), "")
        } else if head_since != NONE {
            (
                head_since.saturating_add(header),
                "no whole request head within the header read timeout",
            )
        } else {
            let idle_since = activity.last_io.load(Ordering::Relaxed);
            (idle_since.saturating_add(idle), "idle for the idle timeout")
        };
        if deadline <= now && !why.is_empty() {
            return why;
        }
        // Wake at the deadline, or sooner: a head may start meanwhile.
        let wake = deadline
            .min(now.saturating_add(recheck))
            .saturating_sub(now)
            .max(1);
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(wake)) => {}
            () = activity.evict.notified() => return "evicted to make room for a new connection",
        }
    }
}

/// The connections of one server, capped.
pub(crate) struct Registry {
    max: usize,
    live: Mutex<VecDeque<Weak<Activity>>>,
}

impl Registry {
    pub(crate) fn new(max: usize) -> Registry {
        Registry {
            max,
            live: Mutex::new(VecDeque::new()),
        }
    }

    /// Makes room for one more connection: at the cap, the oldest with no request in
    /// flight is told to close. `false` when every open connection has a request in
    /// flight (the new one is to be closed).
    fn admit(&self, activity: &Arc<Activity>) -> bool {
        let mut live = self.live.lock();
        live.retain(|known| known.strong_count() > 0);
        if live.len() >= self.max {
            let oldest = live
                .iter()
                .position(|known| known.upgrade().is_some_and(|a| a.is_waiting()));
            match oldest
                .and_then(|at| live.remove(at))
                .and_then(|known| known.upgrade())
            {
                Some(evicted) => evicted.evict.notify_one(),
                None => return false,
            }
        }
        live.push_back(Arc::downgrade(activity));
        true
    }
}

/// Serves `stream` with `service` on a task of its own, watched by `graceful` (so a
/// drain waits for it) and by the timeouts; in `registry` when given (which may refuse
/// it).
pub(crate) fn spawn<S, B>(
    stream: TcpStream,
    service: S,
    builder: &auto::Builder<TokioExecutor>,
    graceful: &GracefulShutdown,
    timeouts: Timeouts,
    registry: Option<&Registry>,
) where
    S: hyper::service::Service<http::Request<hyper::body::Incoming>, Response = http::Response<B>>
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let activity = Arc::new(Activity::new());
    if registry.is_some_and(|registry| !registry.admit(&activity)) {
        tracing::debug!("closing a new connection: every connection has a request in flight");
        return;
    }
    let io = TokioIo::new(Watched {
        inner: stream,
        activity: activity.clone(),
    });
    let service = Tracked {
        inner: service,
        activity: activity.clone(),
    };
    let connection = builder
        .serve_connection_with_upgrades(io, service)
        .into_owned();
    let connection = graceful.watch(connection);
    tokio::spawn(async move {
        tokio::select! {
            result = connection => {
                if let Err(e) = result {
                    tracing::debug!("connection ended with an error: {e}");
                }
            }
            why = watchdog(&activity, timeouts) => tracing::debug!("closing a connection: {why}"),
        }
    });
}

/// A stream that tells its connection's [`Activity`] about every byte.
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.read();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.wrote();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.wrote();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A service that tells its connection's [`Activity`] when requests start and end.
struct Tracked<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S, R> hyper::service::Service<R> for Tracked<S>
where
    S: hyper::service::Service<R>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = InFlight<S::Future>;

    fn call(&self, request: R) -> Self::Future {
        self.activity.request_started();
        InFlight {
            inner: Box::pin(self.inner.call(request)),
            activity: self.activity.clone(),
        }
    }
}

/// A request's response future; the request ends when it resolves or is dropped.
struct InFlight<F> {
    inner: Pin<Box<F>>,
    activity: Arc<Activity>,
}

impl<F: Future> Future for InFlight<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.inner.as_mut().poll(cx)
    }
}

impl<F> Drop for InFlight<F> {
    fn drop(&mut self) {
        self.activity.request_ended();
    }
}
