//! [`serve`]: an HTTP server loop for a worker that does the whole graceful drain.

use std::error::Error as StdError;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

use crate::Worker;
use crate::metrics::requests::{InFlight, OpenConnection};

type BoxError = Box<dyn StdError + Send + Sync>;

/// Serves HTTP/1 and HTTP/2 on `listener` with `service` (an `axum::Router`, or any
/// tower service taking requests with an [`axum::body::Body`]) until the worker is
/// asked to stop, then drains:
///
/// 1. stops accepting and drops the listener (the master's copy keeps the queue, which
///    the other workers go on accepting from);
/// 2. lets in-flight requests finish: every HTTP/2 connection gets its GOAWAY at once,
///    idle or streaming; each HTTP/1 connection closes after its current response
///    (HTTP/1 responses from then on say `connection: close`, so that clients open a
///    new connection, which another worker accepts, instead of sending their next
///    request on one about to close), and the keep-alive connections still idle 100 ms
///    after the stop are closed; upgraded connections (WebSockets) count too, and
///    [`crate::websocket::Closing`] closes them with a close frame;
/// 3. returns as soon as every connection is closed (at once when none is open), or
///    gives up on the rest at the drain's deadline ([`Worker::drain_deadline`]), just
///    before the drain timeout ([`Worker::drain_timeout`]) at which the master would kill
///    the worker.
///    A gRPC response still streaming then (a server-streaming call, its
///    `content-type` `application/grpc...`) is not cut: it ends with the status
///    UNAVAILABLE (`grpc-status: 14`, with a `grpc-message` saying the worker is
///    draining), which gRPC clients retry, and `serve` waits a moment for those last
///    frames to leave.
///
/// While it serves, a worker holding more than its fair share of the cluster's open
/// connections (after a scale-up, say) marks that many of its next HTTP/1 responses
/// `connection: close`, so that their clients reconnect to a worker under its share
/// (shedding; fair accepting in `docs/operating.md`). HTTP/2 connections are left as they
/// are.
///
/// Every connection has the timeouts of [`crate::ClusterBuilder::header_read_timeout`],
/// [`crate::ClusterBuilder::idle_timeout`] and
/// [`crate::ClusterBuilder::body_read_timeout`]: a request body that stalls fails the
/// app's read of it, and is answered 408 unless the app answered.
///
/// Connections accepted in the last instant before the stop get 100 ms to deliver their
/// first request before idle connections are closed, so that none is cut unanswered.
///
/// ```no_run
/// #[wix_cluster::main(plugins(Respawn, Graceful))]
/// async fn main(worker: wix_cluster::Worker) -> std::io::Result<()> {
///     let listener = worker.listen("127.0.0.1:8080").await?;
///     let app = axum::Router::new().route("/", axum::routing::get(|| async { "Hi there" }));
///     wix_cluster::http::serve(listener, app, &worker).await
/// }
/// ```
pub async fn serve<S, B>(listener: TcpListener, service: S, worker: &Worker) -> io::Result<()>
where
    S: tower_service::Service<Request<axum::body::Body>, Response = Response<B>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    crate::metrics::requests::register();
    let drain = crate::connection::drain::Drain::for_app();
    let stop = worker.shutdown();
    tokio::pin!(stop);
    let share_the_queue = !worker.is_single_process();
    let mut accept_errors = ErrorReport::default();
    let timeouts = worker.timeouts();
    let builder = crate::connection::builder(timeouts);
    let drain_end = crate::connection::DrainEnd::new();
    // Takes a connection only while this worker holds no more than its fair share of
    // the cluster's (`crate::fair_share`).
    let listener = crate::fair_share::gate::Listener::new(listener)?;
    loop {
        let accepted = tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, held) = match accepted {
            Ok(accepted) => accepted,
            Err(e) if is_per_connection(&e) => continue,
            Err(e) => {
                // Out of descriptors or memory: back off instead of spinning, counted
                // (`wix_cluster_worker_accept_errors_total`) and logged at most every
                // 10 s.
                let total = worker.count_accept_error();
                accept_errors.failed(&e, total);
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let service = Counted {
            inner: TowerToHyperService::new(service.clone()),
            worker: worker.clone(),
            _open: OpenConnection::open(),
            held,
        };
        crate::connection::spawn(
            stream,
            service,
            &builder,
            &drain,
            timeouts,
            None,
            Some(&drain_end),
        );
        if share_the_queue && !listener.is_fair() {
            // Every worker accepts from one kernel queue, and a burst of connections
            // wakes them all; the first to run would otherwise take the whole burst
            // before the others are scheduled (with 64 keep-alive connections opened
            // at once, one worker of two often got all of them and the other none).
            // Giving up the CPU after each accepted connection lets the woken siblings
            // take their share. It costs one cheap system call per new connection and
            // returns at once when nothing else is waiting for the CPU.
            // Fair accepting, when on, spreads a burst by itself (measured: no
            // loss of requests/s without this there).
            std::thread::yield_now();
        }
    }
    drop(listener);
    // Every connection shuts down gracefully: an HTTP/2 one at once (GOAWAY), an
    // HTTP/1 one after its current response, or SETTLE from now when idle (one accepted
    // just before the stop may not have had its first request read yet). Upgraded
    // connections (WebSockets) are the app's to close: `Worker::shutdown` told it, and
    // `crate::websocket` closes them with a close frame. With no connection open there
    // is nothing to wait for: an idle worker exits at once.
    drain.start();
    let began = tokio::time::Instant::now();
    let open = drain.open();
    tracing::info!(
        "draining: stopped accepting; {} connections open ({} HTTP/1, {} HTTP/2, {} upgraded, \
         {} without a request yet)",
        open.total(),
        open.http1,
        open.http2,
        open.upgraded,
        open.unknown
    );
    let finished = tokio::select! {
        () = drain.finished() => true,
        () = worker.drain_time_up(Duration::ZERO) => false,
    };
    let left = drain.open();
    if finished {
        tracing::info!("drained: every connection closed");
    } else {
        tracing::warn!(
            "drain timed out: closing the {} connections left ({} upgraded)",
            left.total(),
            left.upgraded
        );
        // gRPC responses still streaming end with UNAVAILABLE rather than a reset: a
        // moment (within what is left before the master's kill) for those frames to be
        // written and their connections to close.
        drain_end.fire();
        let _ = tokio::time::timeout(last_words(worker.drain_timeout()), drain.finished()).await;
    }
    worker.report_drained(left.total(), left.upgraded, began.elapsed());
    Ok(())
}

/// The rate-limited log of failing accepts: the first at once, then one line per
/// [`ErrorReport::EVERY`] at most, saying how many there were.
#[derive(Default)]
struct ErrorReport {
    last: Option<tokio::time::Instant>,
    since: u64,
}

impl ErrorReport {
    const EVERY: Duration = Duration::from_secs(10);

    fn failed(&mut self, error: &io::Error, total: u64) {
        self.since += 1;
        if self.last.is_some_and(|last| last.elapsed() < Self::EVERY) {
            return;
        }
        tracing::warn!(
            "accept failed: {error}; backing off 50 ms ({} failures since the last report, \
             {total} in all; raise the descriptor limit if it says too many open files)",
            self.since
        );
        self.last = Some(tokio::time::Instant::now());
        self.since = 0;
    }
}

/// Counts every request for the worker (heartbeat stats, `max_requests` and the
/// request metrics), and marks HTTP/1 responses `connection: close` once the worker is
/// stopping, or while it holds more than its fair share of the cluster's connections
/// (shedding, `crate::fair_share`). Lives as long as its connection.
struct Counted<S> {
    inner: S,
    worker: Worker,
    _open: Option<OpenConnection>,
    /// The connection, counted on the fair-accepting board.
    held: crate::fair_share::gate::Held,
}

impl<S, ReqBody, ResBody> hyper::service::Service<Request<ReqBody>> for Counted<S>
where
    S: hyper::service::Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = CloseWhenStopping<S::Future>;

    fn call(&self, request: Request<ReqBody>) -> Self::Future {
        self.worker.count_request();
        let http1 = request.version() <= http::Version::HTTP_11;
        let in_flight = InFlight::start(request.method());
        CloseWhenStopping {
            inner: self.inner.call(request),
            worker: http1.then(|| self.worker.clone()),
            shed: if http1 {
                self.held.shed()
            } else {
                crate::fair_share::gate::Shed::NEVER
            },
            in_flight,
        }
    }
}

/// A response future that adds `connection: close` to an HTTP/1 response produced
/// while the worker is stopping. hyper closes a keep-alive connection after its current
/// response when asked to shut down gracefully, but does not say so in the response:
/// a client would send its next request on that connection and see it closed (a failed
/// request, e.g. in a rolling restart under load). With the header the client knows,
/// opens a new connection, and the shared queue hands it to a worker that is not
/// stopping; hyper also closes the connection after such a response by itself.
///
/// The same header sheds a connection from a worker holding more than its fair share
/// (`crate::fair_share::excess`): the client's new connection goes to a worker under
/// its share.
pub(crate) struct CloseWhenStopping<F> {
    inner: F,
    /// The worker, for HTTP/1 requests only (HTTP/2 has GOAWAY for this).
    worker: Option<Worker>,
    /// Whether to shed the connection (HTTP/1 requests on a connection accepted fairly).
    shed: crate::fair_share::gate::Shed,
    /// The request's metrics, when they are on.
    in_flight: Option<InFlight>,
}

impl<F, B, E> Future for CloseWhenStopping<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: `inner` is pinned structurally: it is never moved out of `self` nor
        // given out unpinned, and `CloseWhenStopping` has no `Drop` impl; `worker` and
        // `shed` are only read and `in_flight` (not pinned) only taken.
        let (inner, worker, shed, in_flight) = unsafe {
            let this = self.get_unchecked_mut();
            (
                Pin::new_unchecked(&mut this.inner),
                &this.worker,
                this.shed,
                &mut this.in_flight,
            )
        };
        let result = std::task::ready!(inner.poll(cx));
        if let Some(in_flight) = in_flight.take() {
            in_flight.finish(result.as_ref().ok().map(Response::status));
        }
        let mut response = result?;
        // A 101 hands the connection over (a WebSocket): it is not closed. Shedding
        // (one relaxed load while there is nothing to shed) only while not stopping,
        // so that a stop's closes are not counted as sheds.
        let close = response.status() != http::StatusCode::SWITCHING_PROTOCOLS
            && worker
                .as_ref()
                .is_some_and(|worker| worker.is_shutting_down() || shed.take());
        if close {
            response
                .headers_mut()
                .insert(http::header::CONNECTION, CLOSE.clone());
        }
        Poll::Ready(Ok(response))
    }
}

static CLOSE: http::HeaderValue = http::HeaderValue::from_static("close");

/// How long a stopping server keeps its open connections as they are before asking them
/// to close (see the comment where it is used; the management app waits as long).
pub(crate) const SETTLE: Duration = Duration::from_millis(100);

/// The part of the drain timeout the server spends waiting for connections, leaving
/// the worker time to exit on its own before the master kills it.
pub(crate) fn drain_budget(timeout: Duration) -> Duration {
    timeout.saturating_sub((timeout / 10).min(Duration::from_millis(500)))
}

/// How long a server that gave up at its drain budget waits for the last frames it
/// asked for (gRPC's UNAVAILABLE): half of what the budget leaves before the drain
/// timeout, at most 100 ms.
fn last_words(timeout: Duration) -> Duration {
    (timeout.saturating_sub(drain_budget(timeout)) / 2).min(Duration::from_millis(100))
}

/// Accept errors that concern one connection only.
pub(crate) fn is_per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    )
}
