//! How busy this worker process is, for the master's [`crate::plugins::Autoscale`]: the time it
//! had work in hand, and the most work it had in hand at once.
//!
//! Work is a request of [`crate::http::serve`] from its head until the app's response
//! head is ready (HTTP/1 requests and HTTP/2 streams; a streamed body, an upgraded
//! connection, an SSE stream after its head are not work: a connection that only waits
//! is not busy), plus what the app reports through the [`crate::metrics::APP_BUSY`]
//! gauge.
//!
//! Process-wide and cheap: a request costs a few relaxed atomics and, when it is the
//! only one, two reads of the coarse clock. The heartbeat carries the totals.

use std::sync::atomic::{AtomicU64, Ordering};

/// Work in hand now (the low [`COUNT_BITS`] bits) and, while there is some, the
/// [`now_ms`] when it went from none to some (the rest): one word, so that a reader
/// never pairs a count with another stretch's start.
static WORKING: AtomicU64 = AtomicU64::new(0);
/// The bits of [`WORKING`] that count; the count saturates there.
const COUNT_BITS: u32 = 20;
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;
/// Milliseconds with work in hand, up to the last time there was none.
static BUSY_MS: AtomicU64 = AtomicU64::new(0);
/// The most work in hand at once since the last heartbeat took it.
static PEAK: AtomicU64 = AtomicU64::new(0);
/// The most processes of the cluster with work in hand at once, this one included, as
/// seen when this one started work since the last heartbeat took it (while work is
/// shared on the board: [`crate::fair_share::gate::share_work`]).
static TOGETHER: AtomicU64 = AtomicU64::new(0);

/// The heartbeat's count: a connection that sends a request counts once per count.
static EPOCH: AtomicU64 = AtomicU64::new(1);
/// Connections that sent a request since the last heartbeat took the count.
static ACTIVE: AtomicU64 = AtomicU64::new(0);
/// Of those, the ones that closed since: a client that opens a connection per request
/// is one client, not one per request.
static CLOSED: AtomicU64 = AtomicU64::new(0);

/// A connection's mark: the heartbeat count it last sent a request in, shifted left
/// by one, with the low bit set once it is counted in that count; 0 before its first
/// request.
pub(crate) struct Seen(AtomicU64);

impl Seen {
    pub(crate) fn new() -> Seen {
        Seen(AtomicU64::new(0))
    }

    /// Its connection sent a request. A connection that has sent one before (a client
    /// that keeps its connection) is counted once per heartbeat: a CPU-bound app on a
    /// single-threaded runtime runs one request at a time whatever the number of
    /// clients, and the others wait in their sockets, where nothing else can count
    /// them. A connection's first request does not count it: a client that opens a
    /// connection per request is one client, however many connections it went
    /// through (those waiting are counted in the accept queue).
    pub(crate) fn request(&self) {
        let epoch = EPOCH.load(Ordering::Relaxed);
        let mark = self.0.load(Ordering::Relaxed);
        let counted = (epoch << 1) | 1;
        if mark == counted {
            return;
        }
        if mark == 0 {
            self.0.store(epoch << 1, Ordering::Relaxed);
            return;
        }
        self.0.store(counted, Ordering::Relaxed);
        ACTIVE.fetch_add(1, Ordering::Relaxed);
    }
}

impl Drop for Seen {
    fn drop(&mut self) {
        let counted = (EPOCH.load(Ordering::Relaxed) << 1) | 1;
        if self.0.load(Ordering::Relaxed) == counted {
            CLOSED.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The coarse monotonic clock in milliseconds (the connections' clock).
pub(crate) fn now_ms() -> u64 {
    crate::connection::coarse_millis()
}

/// One piece of work in hand, until dropped.
pub(crate) struct Working(());

impl Working {
    /// Work begins.
    pub(crate) fn start() -> Working {
        add(1);
        Working(())
    }
}

impl Drop for Working {
    fn drop(&mut self) {
        remove(1);
    }
}

/// The work in hand and its stretch's start, from [`WORKING`]'s word.
fn unpack(word: u64) -> (u64, u64) {
    (word & COUNT_MASK, word >> COUNT_BITS)
}

fn pack(count: u64, since: u64) -> u64 {
    (since << COUNT_BITS) | count.min(COUNT_MASK)
}

fn add(n: u64) {
    let mut word = WORKING.load(Ordering::Relaxed);
    loop {
        let (count, since) = unpack(word);
        let since = if count == 0 { now_ms() } else { since };
        let new = pack(count.saturating_add(n), since);
        match WORKING.compare_exchange_weak(word, new, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => {
                PEAK.fetch_max(new & COUNT_MASK, Ordering::Relaxed);
                if count == 0 {
                    if let Some(now) = crate::fair_share::gate::work_changed(true) {
                        TOGETHER.fetch_max(now, Ordering::Relaxed);
                    }
                }
                return;
            }
            Err(now) => word = now,
        }
    }
}

fn remove(n: u64) {
    let mut word = WORKING.load(Ordering::Relaxed);
    loop {
        let (count, since) = unpack(word);
        // Never below zero, whatever an app's gauge says.
        let left = count.saturating_sub(n);
        let new = if left == 0 { 0 } else { pack(left, since) };
        match WORKING.compare_exchange_weak(word, new, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => {
                if count > 0 && left == 0 {
                    BUSY_MS.fetch_add(now_ms().saturating_sub(since), Ordering::Relaxed);
                    crate::fair_share::gate::work_changed(false);
                }
                return;
            }
            Err(now) => word = now,
        }
    }
}

/// Milliseconds the event loop ran late, summed (as the heartbeat's tick sees it).
static LAG_MS: AtomicU64 = AtomicU64::new(0);

/// The heartbeat's tick ran `lag` late: the event loop was busy that long.
pub(crate) fn lagged(lag: std::time::Duration) {
    let ms = u64::try_from(lag.as_millis()).unwrap_or(u64::MAX);
    LAG_MS.fetch_add(ms, Ordering::Relaxed);
}

/// What the heartbeat reports: totals since the process started, which the master
/// turns into a busy share per heartbeat.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Load {
    /// [`now_ms`] when read.
    pub(crate) at_ms: u64,
    /// Milliseconds with work in hand since the process started (the current stretch
    /// included).
    pub(crate) busy_ms: u64,
    /// Milliseconds the event loop ran late.
    pub(crate) lag_ms: u64,
    /// The most work in hand at once since the previous reading (at least what is in
    /// hand now), or the connections still open that sent a request since then if
    /// they are more.
    pub(crate) peak: u32,
    /// The most processes of the cluster with work in hand at once since the previous
    /// reading (at least those with some now), as this one saw them; `None` while work
    /// is not shared on the board.
    pub(crate) together: Option<u32>,
}

/// Reads the totals, and starts the next peak from the work in hand now.
pub(crate) fn read() -> Load {
    let at_ms = now_ms();
    // The finished stretches and the current one, read until no stretch ended in
    // between (it would be counted twice, or not at all).
    let (working, busy_ms) = loop {
        let done = BUSY_MS.load(Ordering::Relaxed);
        let (working, since) = unpack(WORKING.load(Ordering::Relaxed));
        if BUSY_MS.load(Ordering::Relaxed) == done {
            let current = if working > 0 {
                at_ms.saturating_sub(since)
            } else {
                0
            };
            break (working, done.saturating_add(current));
        }
    };
    let active = ACTIVE
        .swap(0, Ordering::Relaxed)
        .saturating_sub(CLOSED.swap(0, Ordering::Relaxed));
    EPOCH.fetch_add(1, Ordering::Relaxed);
    // The next peak starts from what is in hand now (re-read after the swap: a start
    // in between is not lost).
    let peak = PEAK.swap(0, Ordering::Relaxed).max(working).max(active);
    PEAK.fetch_max(
        WORKING.load(Ordering::Relaxed) & COUNT_MASK,
        Ordering::Relaxed,
    );
    // Those with work in hand now start the next count (a stretch that outlasts the
    // second starts no work to count them at).
    let together = crate::fair_share::gate::working_now(working > 0)
        .map(|now| TOGETHER.swap(now, Ordering::Relaxed).max(now));
    Load {
        at_ms,
        busy_ms,
        lag_ms: LAG_MS.load(Ordering::Relaxed),
        peak: u32::try_from(peak).unwrap_or(u32::MAX),
        together: together.map(|n| u32::try_from(n).unwrap_or(u32::MAX)),
    }
}

/// The [`crate::metrics::APP_BUSY`] gauge went from `before` to `after`: the change in
/// whole jobs is work begun or ended.
pub(crate) fn app_busy_changed(before: f64, after: f64) {
    let (before, after) = (jobs(before), jobs(after));
    if after > before {
        add(after - before);
    } else if before > after {
        remove(before - after);
    }
}

/// A gauge's level in whole jobs (nothing for a negative or absurd one).
fn jobs(level: f64) -> u64 {
    if level.is_finite() && level > 0.0 {
        // At most a million jobs: a garbage level cannot wrap the count.
        level.round().min(1e6) as u64
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_peak_is_the_most_in_hand_at_once_and_restarts_from_what_is_in_hand() {
        // One test touches the process-wide counts, so that nothing runs beside it.
        let first = read();
        let a = Working::start();
        let b = Working::start();
        let c = Working::start();
        drop(b);
        drop(c);
        let reading = read();
        assert_eq!(reading.peak, 3);
        assert!(reading.busy_ms >= first.busy_ms);
        // `a` is still in hand: the next peak starts from it.
        assert_eq!(read().peak, 1);
        drop(a);
        assert_eq!(read().peak, 1, "`a` was in hand during the interval");
        assert_eq!(read().peak, 0);

        app_busy_changed(0.0, 2.0);
        assert_eq!(read().peak, 2);
        app_busy_changed(2.0, -3.0);
        app_busy_changed(-3.0, f64::NAN);
        assert_eq!(WORKING.load(Ordering::Relaxed) & COUNT_MASK, 0);
        let (one, two) = (Seen::new(), Seen::new());
        let _ = read();
        one.request();
        two.request();
        assert_eq!(read().peak, 0, "a first request counts no connection");
        one.request();
        one.request();
        two.request();
        assert_eq!(read().peak, 2, "two kept connections sent requests");
        one.request();
        assert_eq!(read().peak, 1, "counted again after the heartbeat");
        let three = Seen::new();
        three.request();
        three.request();
        drop(three);
        one.request();
        assert_eq!(
            read().peak,
            1,
            "a connection that closed is no client waiting"
        );
        let before = read().busy_ms;
        assert!(read().busy_ms >= before, "busy time never goes backwards");
    }

    #[test]
    fn gauge_levels_count_as_whole_jobs() {
        assert_eq!(jobs(2.4), 2);
        assert_eq!(jobs(2.6), 3);
        assert_eq!(jobs(-1.0), 0);
        assert_eq!(jobs(f64::INFINITY), 0);
        assert_eq!(jobs(1e300), 1_000_000);
    }
}
