//! Fair accepting: every worker accepts from the one shared kernel queue, but a worker
//! holding more than its fair share of the cluster's open connections leaves the next
//! connection to the others, so that a few long-lived connections (a proxy's keep-alive
//! pool) spread over every worker instead of piling onto whichever woke first.
//!
//! The counts live on the **board**, one shared segment ([`crate::shm`]) the master
//! makes for the cluster: a header, then one slot of a cache line per worker process
//! (two processes of one worker id are alive at once during a successor-first
//! recycle, so slots are per process). A worker writes its own slot (open connections,
//! whether it accepts, a liveness stamp) and reads the others' before each accept
//! ([`gate`]); the master hands out and clears slots ([`board`]). Nothing crosses a
//! channel, and no connection goes through the master.
//!
//! A worker writing garbage into the board cannot make another read out of bounds (the
//! segment is sealed), and what it can make them believe is bounded by the safety
//! valve: a worker that is over its share still takes a connection that waited in the
//! queue for the accept wait (`WIX_CLUSTER_ACCEPT_WAIT`).

pub(crate) mod board;
pub(crate) mod gate;

/// Cells per slot: one cache line, so that workers writing their own slots do not
/// share lines.
const LINE: usize = 8;
/// Slots on the board: each live worker process holds one, draining ones included.
pub(crate) const SLOTS: usize = 2 * crate::limits::MAX_WORKERS;
/// The board's size in cells: the header line, then the slots.
pub(crate) const CELLS: usize = LINE * (1 + SLOTS);

// Header cell 0: [`MAGIC`], the segment's mark (`crate::shm`), so that a worker knows
// the segment is a board of this layout.
/// Header cell: one past the highest slot in use (what a worker scans).
const USED_CELL: usize = 1;
/// "wixboard" in ASCII.
const MAGIC: u64 = 0x7769_7862_6f61_7264;

/// Slot cell: the connections the process holds open.
const OPEN: usize = 0;
/// Slot cell: how many accept loops the process runs (0: it does not accept, e.g.
/// draining, or not started yet).
const ACCEPTING: usize = 1;
/// Slot cell: when the process last said it is alive, in [`now_ms`] (its heartbeat).
const ALIVE: usize = 2;

/// A slot whose liveness stamp is older than this is not counted: its process is
/// stopped or its event loop blocked, and cannot take its share.
const STALE_MS: u64 = 3_000;
/// More open connections than a process can hold: larger counts read are garbage.
const MAX_OPEN: u64 = 1 << 24;

/// The first cell of slot `slot`.
fn slot_base(slot: usize) -> usize {
    LINE * (1 + slot)
}

/// The monotonic clock in milliseconds, the same in every process of the machine.
fn now_ms() -> u64 {
    match nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC) {
        Ok(now) => {
            let ms = now.tv_sec() as u64 * 1000 + now.tv_nsec() as u64 / 1_000_000;
            ms.max(1)
        }
        Err(_) => 0,
    }
}

/// Whether a worker holding `mine` open connections may accept one more, while the
/// `peers` other accepting workers hold `others` in all: it may as long as it would
/// then hold no more than its fair share of the connections there would be,
/// `ceil(total / workers)`, plus a slack of a 32nd of that share (none below 32), so
/// that a few connections spread exactly (8 on 4 workers: 2 each) and many do not
/// keep workers waiting for a difference that does not matter. Even if the workers
/// that may accept took every connection they may, the one left behind holds at most
/// `(workers - 1) / 32` of a share less (640 connections on 4 workers: 165, 165, 163,
/// 147 at worst).
pub(crate) fn may_accept(mine: u64, others: u64, peers: u64) -> bool {
    let total = mine.saturating_add(others).saturating_add(1);
    let workers = peers.saturating_add(1);
    let share = total.div_ceil(workers);
    mine.saturating_add(1) <= share.saturating_add(share / 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Connections arriving one by one at `workers` workers, each taken by the first
    /// worker (in order) allowed to: the counts they end with.
    fn fill(workers: usize, connections: u64) -> Vec<u64> {
        let mut held = vec![0u64; workers];
        for _ in 0..connections {
            let total: u64 = held.iter().sum();
            let taker = (0..workers)
                .find(|&w| may_accept(held[w], total - held[w], workers as u64 - 1))
                .expect("someone may accept");
            held[taker] += 1;
        }
        held
    }

    #[test]
    fn a_few_connections_spread_exactly_and_many_within_the_slack() {
        assert_eq!(fill(4, 8), vec![2, 2, 2, 2]);
        assert_eq!(fill(2, 4), vec![2, 2]);
        assert_eq!(fill(4, 9), vec![3, 2, 2, 2]);
        assert_eq!(fill(4, 64), vec![16, 16, 16, 16]);
        // The first workers take all they may, the last what is left.
        assert_eq!(fill(4, 640), vec![165, 165, 163, 147]);
    }

    #[test]
    fn some_worker_may_always_accept_and_a_lone_one_always_may() {
        for workers in 1..6u64 {
            for total in 0..50u64 {
                // The worker holding the least may always take one more.
                let least = total / workers;
                assert!(may_accept(least, total - least, workers - 1));
            }
        }
        assert!(may_accept(1000, 0, 0));
    }

    #[test]
    fn garbage_counts_do_not_overflow() {
        assert!(may_accept(0, u64::MAX, u64::MAX));
        assert!(!may_accept(u64::MAX, 0, 3));
        assert!(may_accept(u64::MAX - 1, u64::MAX, 0));
    }
}
