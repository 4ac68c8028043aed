//! The request metrics of [`crate::http::serve`], named after OpenTelemetry's HTTP
//! server conventions in Prometheus form:
//!
//! - `http_server_request_duration_seconds` (histogram), labels `http_request_method`
//!   (`GET`, `HEAD`, `POST`, `PUT`, `DELETE`, `CONNECT`, `OPTIONS`, `TRACE`, `PATCH`, or
//!   `_OTHER`) and `http_response_status_class` (`2xx`, `4xx`, ...; `error` when the
//!   service failed): from the request's head being read to the response's head being
//!   ready. Its `_count` is the requests served.
//! - `http_server_active_requests` (gauge): requests in flight.
//! - `http_server_open_connections` (gauge): connections open.
//!
//! The handles are resolved once per label pair, so a request costs two clock reads and
//! a few uncontended atomic operations.

use std::sync::OnceLock;
use std::time::Instant;

use metrics::{Gauge, Histogram};

/// The request duration histogram's name.
pub const REQUEST_DURATION: &str = "http_server_request_duration_seconds";
/// The in-flight requests gauge's name.
pub const ACTIVE_REQUESTS: &str = "http_server_active_requests";
/// The open connections gauge's name.
pub const OPEN_CONNECTIONS: &str = "http_server_open_connections";

const METHODS: [&str; 10] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "_OTHER",
];
/// Index 0 is a failed service; 1..=9 the status's first digit.
const CLASSES: [&str; 10] = [
    "error", "1xx", "2xx", "3xx", "4xx", "5xx", "6xx", "7xx", "8xx", "9xx",
];

/// The handles of one process.
struct Handles {
    active: Gauge,
    open: Gauge,
    durations: [[OnceLock<Histogram>; CLASSES.len()]; METHODS.len()],
}

fn handles() -> &'static Handles {
    static HANDLES: OnceLock<Handles> = OnceLock::new();
    HANDLES.get_or_init(|| Handles {
        active: metrics::gauge!(ACTIVE_REQUESTS),
        open: metrics::gauge!(OPEN_CONNECTIONS),
        durations: Default::default(),
    })
}

fn method_index(method: &http::Method) -> usize {
    METHODS
        .iter()
        .position(|known| *known == method.as_str())
        .unwrap_or(METHODS.len() - 1)
}

/// Registers the gauges at 0, so that a worker that has served nothing yet shows them.
pub(crate) fn register() {
    if super::requests_on() {
        handles();
    }
}

/// A request being served: counted in flight until dropped, its duration recorded by
/// [`InFlight::finish`].
pub(crate) struct InFlight {
    method: usize,
    started: Instant,
}

impl InFlight {
    /// A request with `method` starts, or `None` when request metrics are off.
    pub(crate) fn start(method: &http::Method) -> Option<InFlight> {
        if !super::requests_on() {
            return None;
        }
        handles().active.increment(1.0);
        Some(InFlight {
            method: method_index(method),
            started: Instant::now(),
        })
    }

    /// The response is ready with `status` (`None`: the service failed).
    pub(crate) fn finish(self, status: Option<http::StatusCode>) {
        let class = status.map_or(0, |status| usize::from(status.as_u16() / 100).min(9));
        let histogram = handles().durations[self.method][class].get_or_init(|| {
            metrics::histogram!(
                REQUEST_DURATION,
                "http_request_method" => METHODS[self.method],
                "http_response_status_class" => CLASSES[class],
            )
        });
        histogram.record(self.started.elapsed().as_secs_f64());
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        handles().active.decrement(1.0);
    }
}

/// An open connection, counted until dropped.
pub(crate) struct OpenConnection(());

impl OpenConnection {
    /// A connection was accepted, or `None` when request metrics are off.
    pub(crate) fn open() -> Option<OpenConnection> {
        if !super::requests_on() {
            return None;
        }
        handles().open.increment(1.0);
        Some(OpenConnection(()))
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        handles().open.decrement(1.0);
    }
}
