//! Health checks: `GET /health/is_alive` (liveness), `GET /health/ready` (readiness)
//! and `GET /health/deployment/test` (the app's own `/health/is_alive` through its
//! shared port).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpStream;

use super::routes::Ctx;
use super::stats::{Tracked, is_ready};
use super::workers;
use crate::WorkerState;

/// How long the deployment test waits for the app.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Slots whose newest process (draining and exited ones aside) is ready. Mid rolling
/// restart a slot whose successor is still starting does not count, even though its
/// predecessor still serves.
pub(crate) fn ready_count(tracked: &[Tracked]) -> usize {
    let mut newest: BTreeMap<u32, &Tracked> = BTreeMap::new();
    for known in tracked {
        if known.exited_at.is_some() || known.info.state == WorkerState::Draining {
            continue;
        }
        let id = known.info.worker.id.get();
        let newer = newest
            .get(&id)
            .is_none_or(|seen| seen.info.worker.generation < known.info.worker.generation);
        if newer {
            newest.insert(id, known);
        }
    }
    newest.values().filter(|known| is_ready(known)).count()
}

/// `GET /health/is_alive`: 200 while the cluster is healthy; 503 when a plugin reports
/// it failing (cyclic death) or no worker is ready.
pub(crate) async fn is_alive(State(ctx): State<Ctx>) -> Response {
    let tracked = workers::observe_health(&ctx).await;
    let serving = tracked.iter().filter(|known| is_ready(known)).count();
    let failing = ctx.master.is_failing();
    // After the observation, which waits on the master: the handover may have come
    // meanwhile.
    if let Some(successor) = ctx.master.handed_over_to() {
        return handed_over(successor);
    }
    let reason = if failing {
        Some("the cluster is failing: cyclic worker death was detected")
    } else if serving == 0 {
        Some("no worker is ready")
    } else {
        None
    };
    let body = json!({
        "status": if reason.is_none() { "alive" } else { "dead" },
        "failing": failing,
        "ready_workers": serving,
        "reason": reason,
    });
    let status = match reason {
        None => StatusCode::OK,
        Some(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    (status, Json(body)).into_response()
}

/// `GET /health/ready`: 200 when as many slots as desired have a ready newest worker;
/// 503 while starting, mid rolling restart, scaling up, and from the moment a stop
/// begins (its drain delay included, while workers still serve). A master that handed
/// the cluster over answers for its successor (see [`handed_over`]).
pub(crate) async fn ready(State(ctx): State<Ctx>) -> Response {
    let tracked = workers::observe_health(&ctx).await;
    let ready = ready_count(&tracked);
    let desired = ctx.master.desired_workers();
    // Stopping first: a master that hands over is marked so before it stops, so a stop
    // seen here with no successor seen after it is a stop of the service. And after
    // the observation, which waits on the master.
    let stopping = ctx.master.is_stopping();
    if let Some(successor) = ctx.master.handed_over_to() {
        return handed_over(successor);
    }
    let is_ready = ready >= desired && ready > 0 && !stopping;
    let status = match (is_ready, stopping) {
        (true, _) => "ready",
        (false, true) => "stopping",
        (false, false) => "not_ready",
    };
    // A cluster short of workers because it cannot start them says why.
    let spawn_error = (!is_ready).then(|| ctx.master.spawn_error()).flatten();
    let body = json!({
        "status": status,
        "ready": ready,
        "desired": desired,
        "spawn_error": spawn_error,
    });
    let status = if is_ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// What an old master's health pages answer once a master upgrade handed the cluster to
/// `successor`: 200 `{"status": "handed_over", "successor": pid}`. The new master said
/// its workers are all ready, and serves the same sockets; a probe that reached the old
/// master's management app in the instant before it stopped accepting must not see the
/// old one's drain as the service going down.
fn handed_over(successor: u32) -> Response {
    let body = json!({
        "status": "handed_over",
        "successor": successor,
    });
    (StatusCode::OK, Json(body)).into_response()
}

/// `GET /health/deployment/test`: asks the app for its own `/health/is_alive` through
/// its first shared listener; 200 when that answers 2xx, 500 with the reason otherwise.
pub(crate) async fn deployment_test(State(ctx): State<Ctx>) -> Response {
    let Some(addr) = ctx.master.app_addrs().first().copied().map(reachable) else {
        return failed(None, None, "the app has no listener yet".to_owned());
    };
    let url = format!("http://{addr}/health/is_alive");
    match tokio::time::timeout(PROBE_TIMEOUT, probe(addr)).await {
        Err(_) => failed(
            Some(&url),
            None,
            format!("the app did not answer within {PROBE_TIMEOUT:?}"),
        ),
        Ok(Err(e)) => failed(Some(&url), None, e),
        Ok(Ok(status)) if status.is_success() => (
            StatusCode::OK,
            Json(json!({
                "status": "ok",
                "url": url,
                "app_status": status.as_u16(),
            })),
        )
            .into_response(),
        Ok(Ok(status)) => failed(
            Some(&url),
            Some(status),
            format!("the app answered {status}"),
        ),
    }
}

fn failed(url: Option<&str>, app_status: Option<StatusCode>, reason: String) -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        Json(json!({
            "status": "failed",
            "url": url,
            "app_status": app_status.map(|s| s.as_u16()),
            "reason": reason,
        })),
    )
        .into_response()
}

/// A bound address one can connect to: `0.0.0.0` and `::` become loopback.
fn reachable(addr: SocketAddr) -> SocketAddr {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, addr.port())
}

/// `GET /health/is_alive` on `addr` over HTTP/1.1; the status it answered.
async fn probe(addr: SocketAddr) -> Result<StatusCode, String> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("cannot connect to the app at {addr}: {e}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("cannot speak HTTP to the app at {addr}: {e}"))?;
    tokio::spawn(async move {
        // Ends with the exchange; an error here is reported by `send_request`.
        let _ = connection.await;
    });
    let request = Request::get("/health/is_alive")
        .header(header::HOST, addr.to_string())
        .body(Body::empty())
        .map_err(|e| format!("cannot build the request: {e}"))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("the app at {addr} did not answer: {e}"))?;
    Ok(response.status())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unspecified_addresses_are_probed_on_loopback() {
        let any: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        assert_eq!(reachable(any).to_string(), "127.0.0.1:8080");
        let any6: SocketAddr = "[::]:8080".parse().unwrap();
        assert_eq!(reachable(any6).to_string(), "[::1]:8080");
        let one: SocketAddr = "192.0.2.3:80".parse().unwrap();
        assert_eq!(reachable(one), one);
    }
}
