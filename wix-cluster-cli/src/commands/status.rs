//! `wix-cluster status`: the cluster in one line, then one row per worker process.
//!
//! Columns dropped for width, in this order: RESTARTS, GEN, P99, UPTIME, RSS, CPU%,
//! REQ/S (ID, PID and STATE always stay), after every header took its short form.

use crate::args::Output;
use crate::client::Client;
use crate::failure::Failure;
use crate::snapshot::{self, Snapshot};
use crate::style::{Style, tint_of};
use crate::table::{Cell, Column, render};
use crate::units::{self, or_dash};

const COLUMNS: [Column; 10] = [
    Column {
        header: "ID",
        short: "ID",
        right: true,
        drop: None,
    },
    Column {
        header: "GEN",
        short: "G",
        right: true,
        drop: Some(2),
    },
    Column {
        header: "PID",
        short: "PID",
        right: true,
        drop: None,
    },
    Column {
        header: "STATE",
        short: "STATE",
        right: false,
        drop: None,
    },
    Column {
        header: "UPTIME",
        short: "UP",
        right: true,
        drop: Some(4),
    },
    Column {
        header: "CPU%",
        short: "CPU",
        right: true,
        drop: Some(6),
    },
    Column {
        header: "RSS",
        short: "RSS",
        right: true,
        drop: Some(5),
    },
    Column {
        header: "REQ/S",
        short: "RPS",
        right: true,
        drop: Some(7),
    },
    Column {
        header: "P99",
        short: "P99",
        right: true,
        drop: Some(3),
    },
    Column {
        header: "RESTARTS",
        short: "RST",
        right: true,
        drop: Some(1),
    },
];

/// Prints the cluster's status.
pub(crate) fn run(client: &Client, output: Output) -> Result<(), Failure> {
    let snapshot = snapshot::read(client)?;
    if output == Output::Json {
        crate::print::json(&snapshot);
        return Ok(());
    }
    let width = crate::style::width();
    let style = Style::for_stdout();
    for line in lines(&snapshot, width, style) {
        crate::print::line(&line);
    }
    Ok(())
}

/// The summary line, then the table.
pub(crate) fn lines(snapshot: &Snapshot, width: Option<usize>, style: Style) -> Vec<String> {
    let c = &snapshot.cluster;
    let mut summary = vec![
        format!("{} (pid {})", c.name, c.pid),
        format!("{}/{} ready", c.workers.ready, c.workers.desired),
        format!("up {}", units::duration(c.uptime_seconds)),
        format!("{} req/s", or_dash(c.requests_per_second, units::rate)),
        format!(
            "p50 {} p99 {}",
            or_dash(c.p50_seconds, units::latency),
            or_dash(c.p99_seconds, units::latency)
        ),
        format!("deaths {}", c.deaths),
        c.management_addr.clone(),
    ];
    if c.failing {
        summary.insert(1, "FAILING".to_owned());
    }
    let mut lines = vec![crate::print::segments(&summary, width)];
    let rows: Vec<Vec<Cell>> = snapshot
        .workers
        .iter()
        .map(|w| {
            vec![
                w.id.to_string().into(),
                w.generation.to_string().into(),
                w.pid.to_string().into(),
                Cell {
                    text: w.state.clone(),
                    tint: tint_of(&w.state),
                },
                units::duration(w.uptime_seconds).into(),
                or_dash(w.cpu_percent, |p| format!("{p:.1}")).into(),
                or_dash(w.rss_bytes.map(|b| b as f64), units::bytes).into(),
                or_dash(w.requests_per_second, units::rate).into(),
                or_dash(w.p99_seconds, units::latency).into(),
                w.restarts.to_string().into(),
            ]
        })
        .collect();
    lines.extend(render(&COLUMNS, &rows, width, style));
    lines
}
