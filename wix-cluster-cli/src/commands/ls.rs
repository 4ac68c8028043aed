//! `wix-cluster ls`: the clusters running on this machine, from their discovery files
//! (stale ones removed on the way).

use serde_json::json;

use crate::args::Output;
use crate::style::Style;
use crate::table::{Column, render};
use crate::units;

const COLUMNS: [Column; 5] = [
    Column {
        header: "NAME",
        short: "NAME",
        right: false,
        drop: None,
    },
    Column {
        header: "PID",
        short: "PID",
        right: true,
        drop: None,
    },
    Column {
        header: "MANAGEMENT",
        short: "ADDR",
        right: false,
        drop: Some(3),
    },
    Column {
        header: "UPTIME",
        short: "UP",
        right: true,
        drop: Some(2),
    },
    Column {
        header: "VERSION",
        short: "VER",
        right: false,
        drop: Some(1),
    },
];

/// Lists the clusters.
pub(crate) fn run(output: Output) {
    let entries = wix_cluster::discovery::list();
    if output == Output::Json {
        crate::print::json(&json!({ "clusters": entries }));
        return;
    }
    if entries.is_empty() {
        eprintln!("no cluster is running for this user");
        return;
    }
    let now = crate::now();
    let rows: Vec<_> = entries
        .iter()
        .map(|e| {
            let addr = format!("{}{}", e.management_addr, e.mount_point);
            vec![
                e.name.clone().into(),
                e.pid.to_string().into(),
                addr.into(),
                units::duration(now - e.started_at).into(),
                e.version.clone().unwrap_or_else(|| "-".into()).into(),
            ]
        })
        .collect();
    for line in render(&COLUMNS, &rows, crate::style::width(), Style::for_stdout()) {
        crate::print::line(&line);
    }
}
