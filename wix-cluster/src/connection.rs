//! One accepted HTTP connection, served with the two timeouts every server of ours
//! applies (the app's [`crate::http::serve`] and the management app), draining or not:
//!
//! - **header read**: a request head must arrive whole within it, counted from the
//!   connection's accept for its first request and from the head's first byte on a
//!   kept-alive connection (a slowloris that sends a head byte by byte, or nothing, is
//!   closed);
//! - **idle**: a connection with no request in flight and no byte read or written for
//!   that long is closed (a keep-alive connection nobody uses), and so is one whose
//!   client stopped reading a response: a response waiting for the client to take its
//!   bytes, with no byte read or written for that long.
//!
//! - **body read**: while the app waits for more of a request body, a byte must arrive
//!   within it (counted from when the app began to wait, so an app that reads slowly is
//!   not held against the client). When it fires the request is answered `408 Request
//!   Timeout` if the app has not answered yet, and the connection closes if it has.
//!
//! The timeouts are kept to within a few milliseconds: they are read from the kernel's
//! coarse clock, which is much cheaper to read than the precise one.
//!
//! Request heads are at most `max_header_bytes` (431 past it): hyper's HTTP/1 read
//! buffer is that large at most, and HTTP/2's header list too.
//!
//! A request is in flight from its head until its response has been sent whole (its
//! body included) or dropped: a response the app streams slowly, with pauses longer than
//! either timeout, is never cut by them, over HTTP/1 or HTTP/2 (where the client's
//! WINDOW_UPDATE and PING frames arrive while the response streams).
//!
//! hyper has a header-read timeout of its own, but not during hyper-util's protocol
//! detection, nor an idle one: a watchdog per connection does both, from what the
//! connection's IO and service see. A registry (the management app's) caps how many
//! connections are open at once: at the cap, the oldest connection with no request in
//! flight is closed to make room, so that fresh probes keep being answered during an
//! attack.

mod beside;
mod coalesce;
pub(crate) mod drain;
mod drain_end;

pub(crate) use drain_end::DrainEnd;

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
use tokio::net::TcpStream;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

/// How long a connection may take to deliver a request head, stay idle, and leave the
/// app waiting for more of a request body; and how large its request heads may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Timeouts {
    pub(crate) header_read: Duration,
    pub(crate) idle: Duration,
    pub(crate) body_read: Duration,
    /// HTTP/1's read buffer, so the largest head; HTTP/2's header list.
    pub(crate) max_header_bytes: usize,
}

/// hyper's connection builder for connections with `timeouts`: request heads past
/// `max_header_bytes` are answered 431 (by hyper for HTTP/1; by h2 for HTTP/2).
pub(crate) fn builder(timeouts: Timeouts) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // The configuration keeps it at 8 KiB or more, hyper's least (it panics below).
    let bytes = timeouts
        .max_header_bytes
        .max(crate::config::MIN_MAX_HEADER_BYTES);
    builder.http1().max_buf_size(bytes);
    builder
        .http2()
        .max_header_list_size(u32::try_from(bytes).unwrap_or(u32::MAX));
    builder
}

/// No head being read.
const NONE: u64 = u64::MAX;

/// Milliseconds of the kernel's coarse monotonic clock (`CLOCK_MONOTONIC_COARSE`), as
/// fine as the timer tick (4 ms at 250 Hz), plenty for timeouts of seconds. It is read
/// at every read and write of a connection: from the vDSO without the time counter,
/// it took 10 ns where `Instant::now()` took 50 ns (on the benchmarks' VM).
pub(crate) fn coarse_millis() -> u64 {
    match nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC_COARSE) {
        Ok(now) => {
            let secs = u64::try_from(now.tv_sec()).unwrap_or(0);
            let millis = u64::try_from(now.tv_nsec()).unwrap_or(0) / 1_000_000;
            secs.saturating_mul(1000).saturating_add(millis)
        }
        // Not on Linux since 2.6.32; the precise clock then.
        Err(_) => {
            static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
            let start = START.get_or_init(std::time::Instant::now);
            u64::try_from(start.elapsed().as_millis()).unwrap_or(NONE - 1)
        }
    }
}

/// What a connection's watchdog reads, written by its IO and its service.
struct Activity {
    /// [`coarse_millis`] at the accept.
    epoch: u64,
    /// Milliseconds since `epoch` of the last byte read or written, or of the last
    /// response.
    last_io: AtomicU64,
    /// Milliseconds since `epoch` when the head being read began; [`NONE`] when none is.
    head_since: AtomicU64,
    /// Requests from their head until their response is sent whole or dropped.
    in_flight: AtomicUsize,
    /// Responses whose body is the client's turn: the app has given hyper what it has
    /// (or hyper has not asked yet), and the bytes wait for the client to take them.
    sending: AtomicUsize,
    /// A request body stalled after its response began: the connection is to close.
    body_stalled: std::sync::atomic::AtomicBool,
    /// Wakes the watchdog to close the connection (evicted, or `body_stalled`).
    evict: Notify,
    /// The connection's place among its server's, held as long as its socket is open
    /// (by an upgrade too).
    member: drain::Member,
    /// Counts the connection among those that sent requests ([`crate::busy`]).
    seen: crate::busy::Seen,
}

impl Activity {
    fn new(member: drain::Member) -> Activity {
        Activity {
            member,
            epoch: coarse_millis(),
            last_io: AtomicU64::new(0),
            // A new connection is waiting for its first head from the start.
            head_since: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            sending: AtomicUsize::new(0),
            body_stalled: std::sync::atomic::AtomicBool::new(false),
            evict: Notify::new(),
            seen: crate::busy::Seen::new(),
        }
    }

    /// Milliseconds since the accept.
    fn now(&self) -> u64 {
        coarse_millis().saturating_sub(self.epoch)
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

    fn request_started(&self, version: http::Version) {
        if self.member.kind() == drain::Kind::Unknown {
            self.member.set_kind(if version >= http::Version::HTTP_2 {
                drain::Kind::Http2
            } else {
                drain::Kind::Http1
            });
        }
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

/// What a connection's watchdog says.
enum Watch {
    /// Close the connection now, for this reason.
    Close(&'static str),
    /// The server drains: shut the connection down gracefully (after its current
    /// response, an HTTP/1 one; a GOAWAY, an HTTP/2 one).
    Drain,
}

/// Resolves when the drain begins (never without `drain`, nor when its server is gone).
async fn drain_begins(drain: &mut Option<watch::Receiver<bool>>) {
    let began = match drain {
        Some(drain) => drain.wait_for(|draining| *draining).await.is_ok(),
        None => false,
    };
    if !began {
        std::future::pending::<()>().await;
    }
}

/// Resolves when the connection should be closed, saying why; or, with `drain`, when
/// its server drains: at once for HTTP/2 (the GOAWAY lets the client move its next
/// streams elsewhere, idle or not), after [`crate::http::SETTLE`] otherwise (an HTTP/1
/// connection accepted just before the stop gets a moment to deliver its first request,
/// which the graceful shutdown would otherwise cut as idle).
async fn watchdog(
    activity: &Activity,
    timeouts: Timeouts,
    mut drain: Option<watch::Receiver<bool>>,
) -> Watch {
    let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(NONE - 1);
    let (header, idle) = (millis(timeouts.header_read), millis(timeouts.idle));
    let recheck = header.min(idle).max(1);
    loop {
        let now = activity.now();
        let head_since = activity.head_since.load(Ordering::Relaxed);
        let (deadline, why) = if activity.in_flight.load(Ordering::Relaxed) > 0 {
            if activity.sending.load(Ordering::Relaxed) > 0 {
                let idle_since = activity.last_io.load(Ordering::Relaxed);
                (
                    idle_since.saturating_add(idle),
                    "the client took no byte of its response for the idle timeout",
                )
            } else {
                // The app is working on every request: its business, not a timeout's.
                (now.saturating_add(recheck), "")
            }
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
            return Watch::Close(why);
        }
        // Wake at the deadline, or sooner: a head may start meanwhile.
        let wake = deadline
            .min(now.saturating_add(recheck))
            .saturating_sub(now)
            .max(1);
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(wake)) => {}
            () = activity.evict.notified() => {
                return Watch::Close(if activity.body_stalled.load(Ordering::Relaxed) {
                    "no byte of a request body within the body read timeout, after its \
                     response began"
                } else {
                    "evicted to make room for a new connection"
                });
            }
            () = drain_begins(&mut drain) => {
                if activity.member.kind() != drain::Kind::Http2 {
                    tokio::time::sleep(crate::http::SETTLE).await;
                }
                return Watch::Drain;
            }
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

/// Serves `stream` with `service` on a task of its own, a member of `drain` (so a
/// drain waits for it, upgraded or not) and watched by the timeouts; in `registry` when
/// given (which may refuse it). Its gRPC responses end with UNAVAILABLE when
/// `drain_end` fires.
pub(crate) fn spawn<S, B>(
    stream: TcpStream,
    service: S,
    builder: &auto::Builder<TokioExecutor>,
    drain: &drain::Drain,
    timeouts: Timeouts,
    registry: Option<&Registry>,
    drain_end: Option<&DrainEnd>,
) where
    S: hyper::service::Service<http::Request<axum::body::Body>, Response = http::Response<B>>
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let activity = Arc::new(Activity::new(drain.join()));
    if registry.is_some_and(|registry| !registry.admit(&activity)) {
        tracing::debug!("closing a new connection: every connection has a request in flight");
        return;
    }
    let socket = coalesce::Socket::new(stream, activity.clone());
    let io = TokioIo::new(coalesce::Watched(socket.clone()));
    let service = Tracked {
        inner: service,
        activity: activity.clone(),
        body_read: timeouts.body_read,
        drain_end: drain_end.cloned(),
    };
    let connection = coalesce::Coalesced::new(
        builder
            .serve_connection_with_upgrades(io, service)
            .into_owned(),
        socket,
    );
    tokio::spawn(async move {
        {
            let mut connection = std::pin::pin!(connection);
            let signal = activity.member.drain_signal();
            // Polled only when its timer fires or it is notified, not at every read and
            // write of the connection.
            let watching = std::pin::pin!(watchdog(&activity, timeouts, Some(signal)));
            let mut ended = beside::first(connection.as_mut(), watching).await;
            if let beside::First::Guard(Watch::Drain) = ended {
                connection.as_mut().inner().graceful_shutdown();
                let watching = std::pin::pin!(watchdog(&activity, timeouts, None));
                ended = beside::first(connection.as_mut(), watching).await;
            }
            match ended {
                beside::First::Main(Err(e)) => {
                    tracing::debug!("connection ended with an error: {e}");
                }
                beside::First::Main(Ok(())) => {}
                beside::First::Guard(Watch::Close(why)) => {
                    tracing::debug!("closing a connection: {why}");
                }
                beside::First::Guard(Watch::Drain) => {}
            }
        }
        // The connection is gone, and with it every holder of its activity but its
        // socket's: a socket still held was handed to an upgrade.
        if Arc::strong_count(&activity) > 1 {
            activity.member.set_kind(drain::Kind::Upgraded);
        }
    });
}

/// A service that tells its connection's [`Activity`] when requests start and end (a
/// request ends when its response body has been sent whole or dropped), and times the
/// request body's reads.
struct Tracked<S> {
    inner: S,
    activity: Arc<Activity>,
    body_read: Duration,
    drain_end: Option<DrainEnd>,
}

impl<S, B> hyper::service::Service<http::Request<hyper::body::Incoming>> for Tracked<S>
where
    S: hyper::service::Service<http::Request<axum::body::Body>, Response = http::Response<B>>,
{
    type Response = http::Response<Sent<B>>;
    type Error = S::Error;
    type Future = Answering<S::Future>;

    fn call(&self, request: http::Request<hyper::body::Incoming>) -> Self::Future {
        let in_flight = InFlight::start(self.activity.clone(), request.version());
        self.activity.seen.request();
        let http1 = request.version() <= http::Version::HTTP_11;
        let (parts, incoming) = request.into_parts();
        let (body, race) = if http_body::Body::is_end_stream(&incoming) {
            (axum::body::Body::new(incoming), None)
        } else {
            let race = Arc::new(Race::new(self.activity.clone()));
            let body = Timed {
                inner: incoming,
                timeout: self.body_read,
                timer: None,
                waiting: false,
                over: false,
                race: race.clone(),
            };
            (axum::body::Body::new(body), Some(race))
        };
        let request = http::Request::from_parts(parts, body);
        Answering {
            inner: Some(self.inner.call(request)),
            working: Some(crate::busy::Working::start()),
            request: Some(in_flight),
            race,
            http1,
            // gRPC is HTTP/2 only: an HTTP/1 response is never ended by the drain (and
            // saves the clone and the header lookup).
            drain_end: if http1 { None } else { self.drain_end.clone() },
        }
    }
}

/// Who comes first for a request with a body: the app's response, or the body read
/// timeout ([`Race::ANSWERING`] until one of them does).
struct Race {
    state: std::sync::atomic::AtomicU8,
    /// The response future's, woken when the body read timeout wins.
    answer: Mutex<Option<std::task::Waker>>,
    activity: Arc<Activity>,
}

impl Race {
    const ANSWERING: u8 = 0;
    const ANSWERED: u8 = 1;
    const TIMED_OUT: u8 = 2;

    fn new(activity: Arc<Activity>) -> Race {
        Race {
            state: std::sync::atomic::AtomicU8::new(Self::ANSWERING),
            answer: Mutex::new(None),
            activity,
        }
    }

    /// The app answered: `false` if the body read timeout came first.
    fn answered(&self) -> bool {
        self.state
            .compare_exchange(
                Self::ANSWERING,
                Self::ANSWERED,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
    }

    fn timed_out(&self) -> bool {
        self.state.load(Ordering::Acquire) == Self::TIMED_OUT
    }

    /// The body read timeout fired: the response future answers 408, or, when the app
    /// has answered already, the connection closes.
    fn time_out(&self) {
        let first = self
            .state
            .compare_exchange(
                Self::ANSWERING,
                Self::TIMED_OUT,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok();
        if first {
            if let Some(waker) = self.answer.lock().take() {
                waker.wake();
            }
        } else {
            self.activity.body_stalled.store(true, Ordering::Relaxed);
            self.activity.evict.notify_one();
        }
    }
}

/// A request body that gives up when the app has waited the body read timeout for its
/// next frame.
struct Timed {
    inner: hyper::body::Incoming,
    timeout: Duration,
    /// Made at the first wait.
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    /// The app is waiting for a frame (the timer runs).
    waiting: bool,
    /// Timed out: nothing more comes.
    over: bool,
    race: Arc<Race>,
}

impl http_body::Body for Timed {
    type Data = axum::body::Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        if self.over {
            return Poll::Ready(None);
        }
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            self.waiting = false;
            return Poll::Ready(frame.map(|frame| frame.map_err(Into::into)));
        }
        if !self.waiting {
            self.waiting = true;
            let deadline = Instant::now() + self.timeout;
            match &mut self.timer {
                Some(timer) => timer.as_mut().reset(deadline),
                None => self.timer = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
        }
        let fired = self
            .timer
            .as_mut()
            .is_some_and(|timer| timer.as_mut().poll(cx).is_ready());
        if !fired {
            return Poll::Pending;
        }
        self.over = true;
        self.race.time_out();
        Poll::Ready(Some(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "no byte of the request body within the body read timeout",
        )
        .into())))
    }

    fn is_end_stream(&self) -> bool {
        self.over || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// One request of a connection, counted in its [`Activity`] until dropped.
struct InFlight {
    activity: Arc<Activity>,
    /// Counted in [`Activity::sending`].
    sending: bool,
}

impl InFlight {
    fn start(activity: Arc<Activity>, version: http::Version) -> InFlight {
        activity.request_started(version);
        InFlight {
            activity,
            sending: false,
        }
    }

    /// Whether the response's bytes wait for the client (`true`) or for the app.
    fn sending(&mut self, sending: bool) {
        if self.sending != sending {
            self.sending = sending;
            if sending {
                self.activity.sending.fetch_add(1, Ordering::Relaxed);
            } else {
                self.activity.sending.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.sending(false);
        self.activity.request_ended();
    }
}

/// A request's response future; the request goes on in the response's body. A request
/// whose body timed out before the app answered is answered 408 (its HTTP/1 connection
/// closing after it), and the app's future dropped.
struct Answering<F> {
    /// The app's future, in place (no allocation per request); `None` once dropped.
    inner: Option<F>,
    /// The worker is busy with the request until its response head is ready.
    working: Option<crate::busy::Working>,
    /// Taken by the response (or dropped with the future).
    request: Option<InFlight>,
    /// For a request with a body.
    race: Option<Arc<Race>>,
    http1: bool,
    /// Ends the response if it is gRPC ([`DrainEnd::watch`]).
    drain_end: Option<DrainEnd>,
}

impl<F, B, E> Future for Answering<F>
where
    F: Future<Output = Result<http::Response<B>, E>>,
{
    type Output = Result<http::Response<Sent<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: `inner` is pinned structurally: it is never moved out of `self` nor
        // given out unpinned (it is only polled, or dropped in place by `Pin::set`), and
        // `Answering` has no `Drop` impl; the other fields are not pinned.
        let this = unsafe { self.get_unchecked_mut() };
        let mut inner = unsafe { Pin::new_unchecked(&mut this.inner) };
        if let Some(race) = &this.race {
            // Registered before the state is read: a timeout in between wakes us.
            *race.answer.lock() = Some(cx.waker().clone());
        }
        let timed_out = this.race.as_ref().is_some_and(|race| race.timed_out());
        let response = match (inner.as_mut().as_pin_mut(), timed_out) {
            (Some(app), false) => {
                let response = std::task::ready!(app.poll(cx))?;
                let first = this.race.as_ref().is_none_or(|race| race.answered());
                first.then(|| response.map(Some))
            }
            _ => None,
        };
        let response = response.unwrap_or_else(|| {
            inner.set(None);
            let mut timeout = http::Response::new(None);
            *timeout.status_mut() = http::StatusCode::REQUEST_TIMEOUT;
            if this.http1 {
                timeout.headers_mut().insert(
                    http::header::CONNECTION,
                    http::HeaderValue::from_static("close"),
                );
            }
            timeout
        });
        this.working = None;
        let mut request = this.request.take();
        if let Some(request) = &mut request {
            // hyper sends the head, then asks for the body.
            request.sending(true);
        }
        let ending = this
            .drain_end
            .as_ref()
            .and_then(|drain_end| drain_end.watch(&response));
        Poll::Ready(Ok(response.map(|body| Sent {
            inner: body,
            request,
            ending,
        })))
    }
}

/// A response body that keeps its request in flight until it has been sent whole or
/// dropped, and tells whose turn it is: the app's while it has no frame ready, the
/// client's while hyper holds one it has not written. No body (`None`): the 408 of a
/// request whose body timed out.
///
/// A gRPC response still being sent when the drain budget is over ends there with a
/// trailers frame saying UNAVAILABLE (see [`DrainEnd`]), its body dropped.
pub(crate) struct Sent<B> {
    inner: Option<B>,
    request: Option<InFlight>,
    ending: Option<drain_end::Ending>,
}

impl<B: http_body::Body> http_body::Body for Sent<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        // SAFETY: `inner` is pinned structurally: it is never moved out of `self` nor
        // given out unpinned (only polled, or dropped in place by `Pin::set`), and `Sent`
        // has no `Drop` impl; `request` and `ending` are not pinned.
        let (mut inner, request, ending) = unsafe {
            let this = self.get_unchecked_mut();
            (
                Pin::new_unchecked(&mut this.inner),
                &mut this.request,
                &mut this.ending,
            )
        };
        let Some(body) = inner.as_mut().as_pin_mut() else {
            *request = None;
            return Poll::Ready(None);
        };
        // A gRPC response reads the flag before each frame (no frame of the app's is
        // taken and lost), and is woken by the firing only when the body has none ready.
        let mut trailers = ending.as_mut().and_then(|ending| ending.trailers(None));
        let mut polled = Poll::Pending;
        if trailers.is_none() {
            polled = body.poll_frame(cx);
            if polled.is_pending() {
                trailers = ending.as_mut().and_then(|ending| ending.trailers(Some(cx)));
            }
        }
        if let Some(trailers) = trailers {
            tracing::debug!("a gRPC response ended UNAVAILABLE at the drain timeout");
            // Its last frame: the body dropped, the request over at the next poll.
            inner.set(None);
            *ending = None;
            polled = Poll::Ready(Some(Ok(http_body::Frame::trailers(trailers))));
        }
        match &polled {
            Poll::Pending => {
                if let Some(request) = request {
                    request.sending(false);
                }
            }
            Poll::Ready(Some(Ok(_))) => {
                if let Some(request) = request {
                    request.sending(true);
                }
            }
            // The whole body, or its end by an error: the request is over.
            Poll::Ready(None | Some(Err(_))) => *request = None,
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(B::is_end_stream)
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| http_body::SizeHint::with_exact(0), B::size_hint)
    }
}
