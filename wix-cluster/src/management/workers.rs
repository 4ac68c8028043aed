//! The worker table: one row per worker process, live or lately exited, and the
//! `GET /workers` page.

use std::time::{Duration, SystemTime};

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use serde_json::{Value, json};

use super::routes::{Ctx, unix_seconds};
use super::stats::Tracked;
use crate::{WorkerId, WorkerInfo, WorkerRef, WorkerState};

/// The live workers: the master's snapshot, or in single-process mode this process as
/// worker 0 (ready once the app holds a listener).
pub(crate) async fn live(ctx: &Ctx) -> Vec<WorkerInfo> {
    if !ctx.master.is_single_process() {
        return ctx.master.workers().await;
    }
    let state = if ctx.master.app_addrs().is_empty() {
        WorkerState::Online
    } else {
        WorkerState::Ready
    };
    vec![WorkerInfo {
        worker: WorkerRef {
            id: WorkerId(0),
            generation: 0,
            pid: std::process::id(),
        },
        state,
        started_at: ctx.master.started_at(),
        since_heartbeat: Duration::ZERO,
        requests: 0,
        accept_errors: 0,
        connections: crate::connection::drain::app_open(),
        load: None,
    }]
}

/// Takes a fresh snapshot (and the custom metrics collected so far) into the stats and
/// returns every tracked worker.
pub(crate) async fn observe(ctx: &Ctx) -> Vec<Tracked> {
    let live = live(ctx).await;
    ctx.stats.observe(&live);
    ctx.stats.set_custom(&ctx.master.metrics());
    ctx.stats.tracked()
}

/// [`observe`] without reading the custom metrics: for the health pages, which must
/// stay cheap however many metrics workers report.
pub(crate) async fn observe_health(ctx: &Ctx) -> Vec<Tracked> {
    let live = live(ctx).await;
    ctx.stats.observe(&live);
    ctx.stats.tracked()
}

/// `starting`, `online`, `ready`, `draining` or `exited`.
pub(crate) fn state_name(known: &Tracked) -> &'static str {
    if known.exited_at.is_some() {
        "exited"
    } else {
        known.info.state.as_str()
    }
}

/// One worker process, as `/workers` (and `/stats`) show it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Row {
    /// The slot, `1..=N` (0 in single-process mode).
    pub(crate) id: u32,
    /// How many processes held the slot before this one.
    pub(crate) generation: u32,
    pub(crate) pid: u32,
    pub(crate) state: &'static str,
    /// When it was spawned (Unix seconds).
    pub(crate) started_at: f64,
    /// Seconds since it was spawned (until it exited, for an exited one).
    pub(crate) uptime_seconds: f64,
    /// Times the slot was restarted before this process: its generation.
    pub(crate) restarts: u32,
    /// CPU use between the last two samples, in % of one core.
    pub(crate) cpu_percent: Option<f64>,
    /// CPU time used so far (user + system).
    pub(crate) cpu_seconds: Option<f64>,
    /// Resident memory.
    pub(crate) rss_bytes: Option<u64>,
    /// Milliseconds since its last heartbeat (sent every second by a task of its event
    /// loop: much more than 1000 means a blocked loop). `null` in single-process mode.
    pub(crate) heartbeat_age_ms: Option<u64>,
    /// Requests served through `wix_cluster::http::serve`, as of its last heartbeat.
    /// `null` in single-process mode.
    pub(crate) requests: Option<u64>,
    /// Its open connections by kind (`http1`, `http2`, `upgraded`), as of its last
    /// heartbeat.
    pub(crate) connections: crate::OpenConnections,
    /// The share of its last heartbeat's second it was busy (work in hand, or its event
    /// loop late), 0 to 1; `null` before its second heartbeat and in single-process mode.
    pub(crate) busy: Option<f64>,
    /// The most clients it had at once in that second (requests in flight, or kept
    /// connections that sent requests); `null` when `busy` is.
    pub(crate) clients: Option<u32>,
    /// When it exited (Unix seconds); `null` while it runs.
    pub(crate) exited_at: Option<f64>,
}

impl Row {
    pub(crate) fn new(known: &Tracked, ctx: &Ctx) -> Row {
        let info = &known.info;
        let single = ctx.master.is_single_process();
        let until = known.exited_at.unwrap_or_else(SystemTime::now);
        Row {
            id: info.worker.id.get(),
            generation: info.worker.generation,
            pid: info.worker.pid,
            state: state_name(known),
            started_at: unix_seconds(info.started_at),
            uptime_seconds: until
                .duration_since(info.started_at)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0),
            restarts: info.worker.generation,
            cpu_percent: known.cpu_percent.map(round2),
            cpu_seconds: known.cpu_time.map(|t| t.as_secs_f64()),
            rss_bytes: known.rss_bytes,
            heartbeat_age_ms: (!single && known.exited_at.is_none())
                .then_some(info.since_heartbeat.as_millis() as u64),
            requests: (!single).then_some(info.requests),
            connections: info.connections,
            busy: info
                .load
                .map(|load| round2((load.busy + load.lag).min(1.0))),
            clients: info.load.map(|load| load.peak),
            exited_at: known.exited_at.map(unix_seconds),
        }
    }
}

fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

/// `GET /workers`: every worker process, live or exited in the last minute.
pub(crate) async fn page(State(ctx): State<Ctx>) -> Json<Value> {
    let rows: Vec<Row> = observe(&ctx)
        .await
        .iter()
        .map(|known| Row::new(known, &ctx))
        .collect();
    Json(json!({
        "desired": ctx.master.desired_workers(),
        "workers": rows,
    }))
}
