//! The admin actions, `POST /workers/restart`, `POST /workers/scale?count=N`,
//! `POST /master/upgrade` and `POST /master/stop`, and the bearer token that guards
//! them.
//!
//! Without a configured token (`WIX_CLUSTER_ADMIN_TOKEN`, or the program's) the actions
//! answer 403; with one, a request must carry `Authorization: Bearer <token>` or gets
//! 401. The scheme is read in any case (RFC 7235); blanks around the token are not
//! part of it, as they are not of the configured one. The presented token is compared
//! with the configured one as their SHA-256 digests, in constant time: neither where
//! they differ nor the configured token's length shows in how long the answer takes.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::routes::{Ctx, error};

/// The most workers `POST /workers/scale` accepts: a guard against a typo.
pub(crate) const MAX_SCALE: usize = crate::limits::MAX_WORKERS;

/// `None` when the request may act on the cluster; the refusal otherwise: 403 without
/// a configured token, 401 without the right one, 409 in single-process mode.
fn refusal(ctx: &Ctx, headers: &HeaderMap) -> Option<Response> {
    unauthorised(ctx, headers).or_else(|| {
        ctx.master.is_single_process().then(|| {
            error(
                StatusCode::CONFLICT,
                "single-process mode: there are no worker processes to restart or scale, \
                 and no master to upgrade",
            )
        })
    })
}

/// `None` when the request carries the admin token; 403 without a configured token,
/// 401 without the right one.
fn unauthorised(ctx: &Ctx, headers: &HeaderMap) -> Option<Response> {
    let Some(expected) = &ctx.about.admin_token else {
        return Some(error(
            StatusCode::FORBIDDEN,
            "no admin token is configured: set WIX_CLUSTER_ADMIN_TOKEN to enable this action",
        ));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(bearer);
    match given {
        Some(given) if same(given, expected) => {}
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
    None
}

/// A token's SHA-256 digest: what is kept of the configured token, and compared.
pub(crate) type Digest = [u8; 32];

/// The SHA-256 digest of `token`.
pub(crate) fn digest(token: &str) -> Digest {
    use sha2::Digest as _;
    sha2::Sha256::digest(token.as_bytes()).into()
}

/// The token of an `Authorization: Bearer <token>` value: the scheme in any case, then
/// blanks, then the token without the blanks around it; `None` for another scheme or
/// no token.
fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once([' ', '\t'])?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Whether `given` is the token whose digest is `expected`, in time independent of
/// both (a fixed-size comparison of digests).
fn same(given: &str, expected: &Digest) -> bool {
    use subtle::ConstantTimeEq;
    digest(given).ct_eq(expected).into()
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

/// `POST /master/upgrade`: starts a master upgrade (as SIGUSR2 does); 202 with the pid
/// of the master being replaced.
pub(crate) async fn upgrade(State(ctx): State<Ctx>, headers: HeaderMap) -> Response {
    if let Some(refusal) = refusal(&ctx, &headers) {
        return refusal;
    }
    tracing::info!("management app: master upgrade requested");
    ctx.master.upgrade();
    (
        StatusCode::ACCEPTED,
        Json(json!({ "status": "upgrade started", "pid": std::process::id() })),
    )
        .into_response()
}

/// `POST /master/stop`: stops the cluster gracefully (as SIGTERM does: the drain delay,
/// then the drain), in single-process mode too; 202 with the pid that will exit.
pub(crate) async fn stop(State(ctx): State<Ctx>, headers: HeaderMap) -> Response {
    if let Some(refusal) = unauthorised(&ctx, &headers) {
        return refusal;
    }
    tracing::info!("management app: stop requested");
    ctx.master.shutdown(0);
    (
        StatusCode::ACCEPTED,
        Json(json!({ "status": "stopping", "pid": std::process::id() })),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::{bearer, digest, same};

    #[test]
    fn tokens_compare_whole() {
        assert!(same("abc", &digest("abc")));
        assert!(!same("abc", &digest("abd")));
        assert!(!same("abc", &digest("abcd")));
        assert!(!same("", &digest("a")));
    }

    #[test]
    fn the_bearer_scheme_is_read_in_any_case() {
        assert_eq!(bearer("Bearer t0k"), Some("t0k"));
        assert_eq!(bearer("bearer t0k"), Some("t0k"));
        assert_eq!(bearer("BEARER \t t0k  "), Some("t0k"));
        assert_eq!(bearer("Basic t0k"), None);
        assert_eq!(bearer("Bearert0k"), None);
        assert_eq!(bearer("Bearer "), None);
        assert_eq!(bearer("Bearer"), None);
    }
}
