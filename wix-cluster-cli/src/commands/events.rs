//! `wix-cluster events [-f]`: the master's event log, oldest first; `-f` prints the
//! last 10 entries, then every new one as it comes through `/events/stream`,
//! reconnecting (from the last entry seen) when the stream ends, as at an upgrade's
//! handover, for up to a minute without an answer.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::args::Output;
use crate::client::Client;
use crate::failure::Failure;
use crate::style::{Style, tint_of};

/// How long `-f` keeps trying to reconnect to a cluster that does not answer.
const RECONNECT_FOR: Duration = Duration::from_secs(60);

/// One entry in a line: `14:03:07  exit  1.0 pid 4321  killed by SIGKILL, ...`.
pub(crate) fn line(event: &Value, width: Option<usize>, style: Style) -> String {
    let kind = event["kind"].as_str().unwrap_or("?");
    let worker = &event["worker"];
    let who = if worker.is_null() {
        "-".to_owned()
    } else {
        format!(
            "{}.{} pid {}",
            worker["id"].as_u64().unwrap_or(0),
            worker["generation"].as_u64().unwrap_or(0),
            worker["pid"].as_u64().unwrap_or(0)
        )
    };
    let plain = format!(
        "{}  {kind:<12}  {who:<16}  {}",
        crate::units::clock(event["time"].as_f64().unwrap_or(0.0)),
        event["cause"].as_str().unwrap_or("")
    );
    let plain = match width {
        Some(w) => crate::table::cut(&plain, w),
        None => plain,
    };
    // The kind is the 11th column on: colour only it.
    match (plain.get(..10), plain.get(10..10 + kind.len())) {
        (Some(head), Some(word)) if word == kind => format!(
            "{head}{}{}",
            style.tint(word, tint_of(kind)),
            &plain[10 + kind.len()..]
        ),
        _ => plain,
    }
}

/// Prints the log, or follows it.
pub(crate) fn run(client: &Client, output: Output, follow: bool) -> Result<(), Failure> {
    let log = client.get("/events")?;
    let mut events: Vec<Value> = log["events"].as_array().cloned().unwrap_or_default();
    events.reverse();
    let width = crate::style::width();
    let style = Style::for_stdout();
    if !follow {
        if output == Output::Json {
            crate::print::json(&json!({ "events": events }));
        } else {
            for event in &events {
                crate::print::line(&line(event, width, style));
            }
        }
        return Ok(());
    }
    let mut last = log["latest"].as_u64();
    let show = |event: &Value| {
        if output == Output::Json {
            crate::print::json(event);
        } else {
            crate::print::line(&line(event, width, style));
        }
    };
    for event in events.iter().skip(events.len().saturating_sub(10)) {
        show(event);
    }
    let mut unanswered_since: Option<Instant> = None;
    loop {
        let from = last;
        let mut each = |event: Value| {
            let seq = event["seq"].as_u64();
            if seq.is_some() && seq <= last {
                return;
            }
            show(&event);
            last = seq.or(last);
        };
        match client.stream_events(from, &mut each) {
            Ok(()) => unanswered_since = None,
            Err(Failure::Unreachable(why)) => {
                let since = *unanswered_since.get_or_insert_with(Instant::now);
                if since.elapsed() > RECONNECT_FOR {
                    return Err(Failure::Unreachable(why));
                }
            }
            Err(other) => return Err(other),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
