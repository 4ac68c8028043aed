//! `GET /`: what this program is and how its cluster is doing, in one JSON object.

use std::time::SystemTime;

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use super::health::ready_count;
use super::routes::{Ctx, unix_seconds};
use super::workers;

/// `GET /`: app name and version, pid, uptime, worker counts, deaths, addresses.
pub(crate) async fn page(State(ctx): State<Ctx>) -> Json<Value> {
    let tracked = workers::observe(&ctx).await;
    let master = &ctx.master;
    let started_at = master.started_at();
    let uptime = SystemTime::now()
        .duration_since(started_at)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    let running = tracked.iter().filter(|t| t.exited_at.is_none()).count();
    let app_addrs: Vec<String> = master.app_addrs().iter().map(|a| a.to_string()).collect();
    Json(json!({
        "app": {
            "name": ctx.about.name,
            "version": ctx.about.version,
        },
        "pid": std::process::id(),
        "mode": if master.is_single_process() { "single_process" } else { "cluster" },
        "started_at": unix_seconds(started_at),
        "uptime_seconds": uptime,
        "workers": {
            "desired": master.desired_workers(),
            "running": running,
            "ready": ready_count(&tracked),
        },
        "deaths": master.counters().died,
        "failing": master.is_failing(),
        "management_addr": ctx.management_addr().to_string(),
        "mount_point": ctx.about.mount_point,
        "app_addrs": app_addrs,
        "admin_actions": ctx.about.admin_token.is_some(),
    }))
}
