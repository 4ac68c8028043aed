//! The admin actions, `POST /workers/restart` and `POST /workers/scale?count=N`, and
//! the bearer token that guards them.
//!
//! Without a configured token (`WIX_CLUSTER_ADMIN_TOKEN`, or the program's) the actions
//! answer 403; with one, a request must carry `Authorization: Bearer <token>` or gets
//! 401.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::routes::{Ctx, error};

/// The most workers `POST /workers/scale` accepts: a guard against a typo.
pub(crate) const MAX_SCALE: usize = crate::config::MAX_WORKERS;

/// `None` when the request may act on the cluster; the refusal otherwise: 403 without
/// a configured token, 401 without the right one, 409 in single-process mode.
fn refusal(ctx: &Ctx, headers: &HeaderMap) -> Option<Response> {
    let Some(expected) = &ctx.about.admin_token else {
        return Some(error(
            StatusCode::FORBIDDEN,
            "no admin token is configured: set WIX_CLUSTER_ADMIN_TOKEN to enable this action",
        ));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim);
    match given {
        Some(given) if same(given.as_bytes(), expected.as_bytes()) => {}
        given => {
            let message = if given.is_some() {
                "wrong admin token"
            } else {
                "this action needs the admin token: Authorization: Bearer <token>"
            };
            let mut refusal = error(StatusCode::UNAUTHORIZED, message);
            refusal.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
            return Some(refusal);
        }
    }
    if ctx.master.is_single_process() {
        return Some(error(
            StatusCode::CONFLICT,
            "single-process mode: there are no worker processes to restart or scale",
        ));
    }
    None
}

/// Compares in time independent of where the first difference is.
fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

/// `POST /workers/restart`: starts a rolling restart (as SIGHUP does); 202.
pub(crate) async fn restart(State(ctx): State<Ctx>, headers: HeaderMap) -> Response {
    if let Some(refusal) = refusal(&ctx, &headers) {
        return refusal;
    }
    tracing::info!("management app: rolling restart requested");
    ctx.master.rolling_restart();
    (
        StatusCode::ACCEPTED,
        Json(json!({ "status": "rolling restart started" })),
    )
        .into_response()
}

#[derive(Deserialize)]
pub(crate) struct Scale {
    count: Option<String>,
}

/// `POST /workers/scale?count=N`: runs `N` workers (`1..=1024`); 202.
pub(crate) async fn scale(
    State(ctx): State<Ctx>,
    headers: HeaderMap,
    Query(query): Query<Scale>,
) -> Response {
    if let Some(refusal) = refusal(&ctx, &headers) {
        return refusal;
    }
    let count = match query.count.as_deref().map(|c| c.trim().parse::<usize>()) {
        Some(Ok(count)) if (1..=MAX_SCALE).contains(&count) => count,
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("expected ?count=N with N a whole number from 1 to {MAX_SCALE}"),
            );
        }
    };
    let from = ctx.master.desired_workers();
    tracing::info!("management app: scaling from {from} to {count} workers");
    ctx.master.scale(count);
    (
        StatusCode::ACCEPTED,
        Json(json!({ "status": "scaling", "from": from, "to": count })),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::same;

    #[test]
    fn tokens_compare_whole() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"abcd"));
        assert!(!same(b"", b"a"));
    }
}
