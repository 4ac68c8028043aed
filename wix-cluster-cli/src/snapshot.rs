//! How a cluster is doing, read from its management app (`GET /`, `/workers`,
//! `/traffic`) and put in the shape `status` prints and `-o json` gives (the schema in
//! docs/cli.md): the cluster, then one row per worker process.

use serde::Serialize;
use serde_json::Value;

use crate::client::Client;
use crate::failure::Failure;

/// The cluster, then its workers.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Snapshot {
    pub(crate) cluster: Cluster,
    pub(crate) workers: Vec<Row>,
}

/// The cluster as a whole.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Cluster {
    pub(crate) name: String,
    pub(crate) version: Option<String>,
    pub(crate) pid: u64,
    pub(crate) mode: String,
    pub(crate) started_at: f64,
    pub(crate) uptime_seconds: f64,
    pub(crate) management_addr: String,
    pub(crate) workers: Counts,
    pub(crate) deaths: u64,
    pub(crate) failing: bool,
    /// Requests per second over the last second, every worker together.
    pub(crate) requests_per_second: Option<f64>,
    pub(crate) p50_seconds: Option<f64>,
    pub(crate) p99_seconds: Option<f64>,
}

/// How many workers are desired, running and ready.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct Counts {
    pub(crate) desired: u64,
    pub(crate) running: u64,
    pub(crate) ready: u64,
}

/// One worker process.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Row {
    pub(crate) id: u64,
    pub(crate) generation: u64,
    pub(crate) pid: u64,
    pub(crate) state: String,
    pub(crate) started_at: f64,
    pub(crate) uptime_seconds: f64,
    pub(crate) cpu_percent: Option<f64>,
    pub(crate) rss_bytes: Option<u64>,
    /// Requests served (as of its last heartbeat).
    pub(crate) requests: Option<u64>,
    /// Its slot's requests per second over the last second (on the slot's newest live
    /// process only).
    pub(crate) requests_per_second: Option<f64>,
    pub(crate) p99_seconds: Option<f64>,
    pub(crate) restarts: u64,
}

/// Reads the cluster now.
pub(crate) fn read(client: &Client) -> Result<Snapshot, Failure> {
    let info = client.get("/")?;
    let workers = client.get("/workers")?;
    let traffic = client.get("/traffic")?;
    Ok(assemble(&info, &workers, &traffic))
}

fn assemble(info: &Value, workers: &Value, traffic: &Value) -> Snapshot {
    let latest = traffic["samples"]
        .as_array()
        .and_then(|s| s.last())
        .cloned()
        .unwrap_or(Value::Null);
    let rows: Vec<&Value> = workers["workers"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    let mut out: Vec<Row> = rows
        .iter()
        .map(|w| Row {
            id: w["id"].as_u64().unwrap_or(0),
            generation: w["generation"].as_u64().unwrap_or(0),
            pid: w["pid"].as_u64().unwrap_or(0),
            state: w["state"].as_str().unwrap_or("?").to_owned(),
            started_at: w["started_at"].as_f64().unwrap_or(0.0),
            uptime_seconds: w["uptime_seconds"].as_f64().unwrap_or(0.0),
            cpu_percent: w["cpu_percent"].as_f64(),
            rss_bytes: w["rss_bytes"].as_u64(),
            requests: w["requests"].as_u64(),
            requests_per_second: None,
            p99_seconds: None,
            restarts: w["restarts"].as_u64().unwrap_or(0),
        })
        .collect();
    // A slot's rate goes on its newest live process.
    for index in 0..out.len() {
        let row = &out[index];
        if row.state == "exited" || row.state == "draining" {
            continue;
        }
        let newest = out
            .iter()
            .filter(|r| r.id == row.id && r.state != "exited" && r.state != "draining")
            .map(|r| r.generation)
            .max();
        if newest != Some(row.generation) {
            continue;
        }
        let rate = &latest["workers"][row.id.to_string()];
        let rps = rate["rps"].as_f64();
        let p99 = rate["p99"].as_f64();
        let row = &mut out[index];
        row.requests_per_second = rps.or(Some(0.0));
        row.p99_seconds = p99;
    }
    let counts = &info["workers"];
    Snapshot {
        cluster: Cluster {
            name: info["app"]["name"].as_str().unwrap_or("?").to_owned(),
            version: info["app"]["version"].as_str().map(str::to_owned),
            pid: info["pid"].as_u64().unwrap_or(0),
            mode: info["mode"].as_str().unwrap_or("?").to_owned(),
            started_at: info["started_at"].as_f64().unwrap_or(0.0),
            uptime_seconds: info["uptime_seconds"].as_f64().unwrap_or(0.0),
            management_addr: info["management_addr"].as_str().unwrap_or("").to_owned(),
            workers: Counts {
                desired: counts["desired"].as_u64().unwrap_or(0),
                running: counts["running"].as_u64().unwrap_or(0),
                ready: counts["ready"].as_u64().unwrap_or(0),
            },
            deaths: info["deaths"].as_u64().unwrap_or(0),
            failing: info["failing"].as_bool().unwrap_or(false),
            requests_per_second: latest["total"]["rps"].as_f64(),
            p50_seconds: latest["total"]["p50"].as_f64(),
            p99_seconds: latest["total"]["p99"].as_f64(),
        },
        workers: out,
    }
}
