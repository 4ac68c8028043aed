//! The master's event log: the last [`EVENT_LOG_CAPACITY`] lifecycle events and roll or
//! upgrade steps, each with its time, its worker and its cause in words; read with
//! [`Master::events`](crate::Master::events), streamed by the management app.

use parking_lot::Mutex;
use std::collections::VecDeque;
use std::time::SystemTime;

use tokio::sync::broadcast;

use crate::event::{LifecycleEvent, WorkerRef};

/// How many entries the master's event log keeps; older ones are dropped.
pub const EVENT_LOG_CAPACITY: usize = 500;

/// The longest cause kept, in bytes (a longer one, a panic's message say, is cut at a
/// character boundary and ends with `…`).
pub const MAX_CAUSE_BYTES: usize = 1024;

/// How many entries a live subscriber may fall behind before it has to resync from the
/// log.
const BROADCAST_BACKLOG: usize = 256;

/// One entry of the master's event log.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EventRecord {
    /// Its place in the log: one more than the entry before. A master's seqs start
    /// from its start time in milliseconds times 1000, so that a new master's (after
    /// an upgrade) are all above the old one's and a cursor stays meaningful. Pass it
    /// to [`Master::events`](crate::Master::events) as `since` to read only what came
    /// after.
    pub seq: u64,
    /// When the master recorded it (its clock).
    pub time: SystemTime,
    /// What happened: a lifecycle event's [`LifecycleEvent::name`] (`fork`, `online`,
    /// `listening`, `failing`, `recycled`, `stalled`, `spawn_failed`, `disconnect`,
    /// `exit`), or `roll` (a rolling-restart step) or `upgrade` (a master-upgrade step).
    pub kind: &'static str,
    /// The worker it is about; `None` for a step of the whole cluster.
    pub worker: Option<WorkerRef>,
    /// Why, in words: an exit's code or signal and who sent it, a panic's message and
    /// location, how long a stalled worker was silent, a recycle's reason, a step.
    /// At most [`MAX_CAUSE_BYTES`].
    pub cause: String,
}

/// The bounded log and its live subscribers.
pub(crate) struct EventLog {
    ring: Mutex<Ring>,
    live: broadcast::Sender<EventRecord>,
}

struct Ring {
    capacity: usize,
    /// The seq before the first entry.
    base: u64,
    /// The seq of the latest entry (`base` before any).
    latest: u64,
    entries: VecDeque<EventRecord>,
}

impl EventLog {
    /// A log whose seqs start after this moment's Unix milliseconds times 1000.
    pub(crate) fn new(capacity: usize) -> EventLog {
        let millis = SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| u64::try_from(since.as_millis()).unwrap_or(0));
        EventLog::with_base(capacity, millis.saturating_mul(1000))
    }

    /// A log whose first entry has seq `base + 1`.
    pub(crate) fn with_base(capacity: usize, base: u64) -> EventLog {
        let capacity = capacity.max(1);
        EventLog {
            ring: Mutex::new(Ring {
                capacity,
                base,
                latest: base,
                entries: VecDeque::with_capacity(capacity),
            }),
            live: broadcast::channel(BROADCAST_BACKLOG).0,
        }
    }

    /// Appends an entry (its cause cut to [`MAX_CAUSE_BYTES`]) and tells subscribers.
    pub(crate) fn record(&self, kind: &'static str, worker: Option<WorkerRef>, cause: String) {
        let mut ring = self.ring.lock();
        ring.latest += 1;
        let record = EventRecord {
            seq: ring.latest,
            time: SystemTime::now(),
            kind,
            worker,
            cause: truncate(cause, MAX_CAUSE_BYTES),
        };
        if ring.entries.len() >= ring.capacity {
            ring.entries.pop_front();
        }
        ring.entries.push_back(record.clone());
        // Sent under the lock: subscribers see entries in seq order. No subscriber is
        // not an error.
        let _ = self.live.send(record);
    }

    /// The entries after `since` (every entry kept for `None`), newest first.
    pub(crate) fn since(&self, since: Option<u64>) -> Vec<EventRecord> {
        let after = since.unwrap_or(0);
        let ring = self.ring.lock();
        ring.entries
            .iter()
            .rev()
            .take_while(|record| record.seq > after)
            .cloned()
            .collect()
    }

    /// The seq of the latest entry (the base before any) and of the oldest one kept.
    pub(crate) fn bounds(&self) -> (u64, Option<u64>) {
        let ring = self.ring.lock();
        (ring.latest, ring.entries.front().map(|record| record.seq))
    }

    /// The seq before this log's first entry: seqs at or below it are another log's.
    pub(crate) fn base(&self) -> u64 {
        self.ring.lock().base
    }

    /// A receiver of every entry recorded from now on.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<EventRecord> {
        self.live.subscribe()
    }
}

/// `text` cut to at most `max` bytes at a character boundary, ending with `…` when cut.
fn truncate(mut text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    const ELLIPSIS: &str = "…";
    let mut end = max.saturating_sub(ELLIPSIS.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push_str(ELLIPSIS);
    text
}

/// A lifecycle event's cause in words, as the log shows it (an exit's is worded by the
/// supervisor, which knows who signalled the worker).
pub(crate) fn describe(event: &LifecycleEvent) -> String {
    match event {
        LifecycleEvent::Fork(worker) if worker.generation > 0 => format!(
            "started pid {} (generation {}: the slot had a process before)",
            worker.pid, worker.generation
        ),
        LifecycleEvent::Fork(worker) => format!("started pid {}", worker.pid),
        LifecycleEvent::Online(_) => "online: said hello to the master".to_owned(),
        LifecycleEvent::Listening(_, addr) => format!("listening on {addr}"),
        LifecycleEvent::Failing { reason, .. } => format!("going down: {reason}"),
        LifecycleEvent::Recycled { reason, .. } => format!("recycled: {reason}"),
        LifecycleEvent::Stalled { reason, .. } => {
            format!("stalled: {reason}; sent SIGABRT, SIGKILL if it is still there in 2 s")
        }
        LifecycleEvent::SpawnFailed {
            error,
            successor: false,
            ..
        } => format!("cannot start a process: {error}"),
        LifecycleEvent::SpawnFailed {
            error,
            successor: true,
            ..
        } => format!("cannot start a successor: {error}; the slot's worker keeps serving"),
        LifecycleEvent::Disconnect(_) => "its channel to the master closed".to_owned(),
        LifecycleEvent::Exit { reason, .. } => format!("ended with {reason}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_of(capacity: usize, entries: usize) -> EventLog {
        let log = EventLog::with_base(capacity, 0);
        for n in 0..entries {
            log.record("roll", None, format!("step {n}"));
        }
        log
    }

    #[test]
    fn the_log_keeps_only_the_latest_entries_newest_first() {
        let log = log_of(3, 5);
        let seqs: Vec<u64> = log.since(None).iter().map(|r| r.seq).collect();
        assert_eq!(seqs, [5, 4, 3]);
        assert_eq!(log.bounds(), (5, Some(3)));
    }

    #[test]
    fn since_gives_only_later_entries() {
        let log = log_of(10, 5);
        let seqs: Vec<u64> = log.since(Some(3)).iter().map(|r| r.seq).collect();
        assert_eq!(seqs, [5, 4]);
        assert!(log.since(Some(5)).is_empty());
        assert!(log.since(Some(99)).is_empty());
    }

    #[test]
    fn a_long_cause_is_cut_at_a_character_boundary() {
        let log = EventLog::with_base(2, 0);
        log.record("failing", None, "é".repeat(2000));
        let cause = &log.since(None)[0].cause;
        assert!(cause.len() <= MAX_CAUSE_BYTES, "{}", cause.len());
        assert!(cause.ends_with('…'));
    }

    #[test]
    fn subscribers_get_every_new_entry_in_order() {
        let log = EventLog::with_base(2, 0);
        let mut live = log.subscribe();
        log.record("roll", None, "one".into());
        log.record("roll", None, "two".into());
        assert_eq!(live.try_recv().map(|r| r.seq), Ok(1));
        assert_eq!(live.try_recv().map(|r| r.seq), Ok(2));
    }
}
