//! What `top` shows, kept between reads: the latest snapshot, bounded histories (per
//! worker process and for the cluster), the event log's tail, and the admin key being
//! confirmed.

use std::collections::{HashMap, VecDeque};

use serde_json::Value;

use crate::client::Client;
use crate::failure::Failure;
use crate::snapshot::{self, Snapshot};

/// Points of history kept per worker and for the cluster (a minute at the default
/// interval; the screen shows the last that fit).
pub(crate) const HISTORY: usize = 120;
/// Event-log entries kept.
pub(crate) const EVENTS: usize = 500;

/// An admin action waiting for `y`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pending {
    /// A rolling restart.
    Roll,
    /// Scaling to this many workers.
    Scale(u64),
}

/// A worker process's history.
#[derive(Debug, Default)]
pub(crate) struct Trail {
    pub(crate) rps: VecDeque<f64>,
    pub(crate) cpu: VecDeque<f64>,
}

/// Everything on the screen.
#[derive(Debug, Default)]
pub(crate) struct State {
    pub(crate) snapshot: Option<Snapshot>,
    /// By worker pid, for the processes in the latest snapshot only.
    pub(crate) trails: HashMap<u64, Trail>,
    /// The cluster's requests per second.
    pub(crate) rps: VecDeque<f64>,
    /// The event log, oldest first.
    pub(crate) events: VecDeque<Value>,
    cursor: Option<u64>,
    /// How many lines the event pane is scrolled up from its newest.
    pub(crate) scroll: usize,
    pub(crate) pending: Option<Pending>,
    /// The latest answer to an action, or why the cluster could not be read.
    pub(crate) message: Option<String>,
}

fn push(queue: &mut VecDeque<f64>, value: f64) {
    if queue.len() == HISTORY {
        queue.pop_front();
    }
    queue.push_back(value);
}

impl State {
    /// Reads the cluster and its new events.
    pub(crate) fn refresh(&mut self, client: &Client) {
        match snapshot::read(client) {
            Ok(snapshot) => {
                push(
                    &mut self.rps,
                    snapshot.cluster.requests_per_second.unwrap_or(0.0),
                );
                for row in &snapshot.workers {
                    let trail = self.trails.entry(row.pid).or_default();
                    push(&mut trail.rps, row.requests_per_second.unwrap_or(0.0));
                    push(&mut trail.cpu, row.cpu_percent.unwrap_or(0.0));
                }
                self.trails
                    .retain(|pid, _| snapshot.workers.iter().any(|w| w.pid == *pid));
                self.snapshot = Some(snapshot);
                if self
                    .message
                    .as_deref()
                    .is_some_and(|m| m.starts_with("cannot reach"))
                {
                    self.message = None;
                }
            }
            Err(failure) => self.message = Some(failure.message().to_owned()),
        }
        let path = match self.cursor {
            Some(seq) => format!("/events?since={seq}"),
            None => "/events".to_owned(),
        };
        if let Ok(log) = client.get(&path) {
            let mut new: Vec<Value> = log["events"].as_array().cloned().unwrap_or_default();
            new.reverse();
            for event in new {
                let seq = event["seq"].as_u64();
                if seq.is_some() && seq <= self.cursor {
                    continue;
                }
                if self.events.len() == EVENTS {
                    self.events.pop_front();
                }
                self.events.push_back(event);
                self.cursor = seq.or(self.cursor);
            }
            // A new master (an upgrade) starts its log afresh, above the old seqs.
            if self.cursor.is_none() {
                self.cursor = log["latest"].as_u64();
            }
        }
    }

    /// The desired worker count, when known.
    pub(crate) fn desired(&self) -> Option<u64> {
        self.snapshot.as_ref().map(|s| s.cluster.workers.desired)
    }

    /// Runs the confirmed action.
    pub(crate) fn confirm(&mut self, client: &Client) {
        let Some(pending) = self.pending.take() else {
            return;
        };
        let answer = match pending {
            Pending::Roll => client.post("/workers/restart"),
            Pending::Scale(count) => client.post(&format!("/workers/scale?count={count}")),
        };
        self.message = Some(match answer {
            Ok(answer) => answer["status"].as_str().unwrap_or("done").to_owned(),
            Err(Failure::Unauthorised(why)) => format!("not authorised: {why}"),
            Err(other) => other.message().to_owned(),
        });
    }
}
