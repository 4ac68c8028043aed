//! `wix-cluster metrics [PATTERN]`: every series recorded through the `metrics` facade
//! (the management app's `/traffic` table), those whose name contains PATTERN.
//!
//! Columns dropped for width, in this order: WORKER, KIND (SERIES and VALUE stay).

use serde_json::{Value, json};

use crate::args::Output;
use crate::client::Client;
use crate::failure::Failure;
use crate::style::Style;
use crate::table::{Column, render};

const COLUMNS: [Column; 4] = [
    Column {
        header: "SERIES",
        short: "SERIES",
        right: false,
        drop: None,
    },
    Column {
        header: "KIND",
        short: "KIND",
        right: false,
        drop: Some(2),
    },
    Column {
        header: "WORKER",
        short: "W",
        right: true,
        drop: Some(1),
    },
    Column {
        header: "VALUE",
        short: "VALUE",
        right: false,
        drop: None,
    },
];

/// Prints the series.
pub(crate) fn run(client: &Client, output: Output, pattern: Option<&str>) -> Result<(), Failure> {
    let traffic = client.get("/traffic")?;
    let rows: Vec<Value> = traffic["metrics"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|row| {
            pattern.is_none_or(|p| row["name"].as_str().is_some_and(|name| name.contains(p)))
        })
        .cloned()
        .collect();
    if output == Output::Json {
        crate::print::json(&json!({ "metrics": rows }));
        return Ok(());
    }
    let cells: Vec<_> = rows
        .iter()
        .map(|row| {
            vec![
                series(row).into(),
                row["kind"].as_str().unwrap_or("?").to_owned().into(),
                number(&row["worker"]).into(),
                value(row).into(),
            ]
        })
        .collect();
    for line in render(&COLUMNS, &cells, crate::style::width(), Style::for_stdout()) {
        crate::print::line(&line);
    }
    Ok(())
}

/// `name{label="value",...}`.
fn series(row: &Value) -> String {
    let name = row["name"].as_str().unwrap_or("?");
    let labels: Vec<String> = row["labels"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}=\"{}\"", v.as_str().unwrap_or("")))
        .collect();
    if labels.is_empty() {
        name.to_owned()
    } else {
        format!("{name}{{{}}}", labels.join(","))
    }
}

/// A counter's or gauge's value; a histogram's count, sum and quantiles.
fn value(row: &Value) -> String {
    if row["kind"] == "histogram" {
        format!(
            "count {} sum {} p50 {} p99 {}",
            number(&row["count"]),
            number(&row["sum"]),
            number(&row["p50"]),
            number(&row["p99"])
        )
    } else {
        number(&row["value"])
    }
}

fn number(value: &Value) -> String {
    match value {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        other => other.to_string(),
    }
}
