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
//! Fair accepting decides only who takes the *next* connection: a client holding
//! keep-alive connections opened while the cluster had fewer workers (a proxy's pool
//! opened before a scale-up) would keep them where they are for good, and the new
//! workers would get none of its requests. So a worker also **sheds**: a few times a
//! second it works out how many connections it holds above its share plus a slack
//! ([`excess`]), and that many of its HTTP/1 responses say `connection: close` (the
//! client opens a new connection, which fair accepting gives to a worker under its
//! share; [`gate::Shed`]).
//!
//! The board also says which processes have work in hand ([`WORKING`]), while the
//! autoscaler runs: a worker that starts work reads how many others have some, so
//! that the master learns how many workers were busy *at once* — one client hopping
//! from worker to worker keeps one of them busy at a time, two clients each busy half
//! the time keep both busy now and then, and only the first would be served as well
//! by one worker fewer ([`crate::plugins::Autoscale`]).
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
/// Slot cell: 1 while the process has work in hand ([`crate::busy`]), for the
/// autoscaler: whether every worker was busy at once. Written only while
/// [`gate::share_work`] is on.
const WORKING: usize = 3;

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

/// How many of the `mine` connections a worker holds it should close, while the
/// `peers` other accepting workers hold `others` in all: those above its share,
/// `ceil(total / workers)`, plus a slack of an 8th of that share (at least 1). The
/// slack keeps a few connections exact (16 on 2 workers end 9/7 at worst, 8 on 4
/// workers 3, 2, 2, 1 at worst) and many from being passed back and forth for a
/// difference that does not matter; it is larger than [`may_accept`]'s, so that a
/// worker never sheds what it was just allowed to accept. None for a worker alone.
pub(crate) fn excess(mine: u64, others: u64, peers: u64) -> u64 {
    if peers == 0 {
        return 0;
    }
    let total = mine.saturating_add(others);
    let share = total.div_ceil(peers.saturating_add(1));
    let slack = (share / 8).max(1);
    mine.saturating_sub(share.saturating_add(slack))
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
        // At most what the worker holds, whatever the others are said to hold.
        assert_eq!(excess(u64::MAX, u64::MAX, u64::MAX), u64::MAX - 2);
        assert_eq!(excess(0, u64::MAX, u64::MAX), 0);
        assert_eq!(excess(u64::MAX / 4, u64::MAX / 4, 1), 0);
        assert_eq!(excess(5, 0, u64::MAX), 3);
    }

    /// `held` after a scale-up: each round, every worker sheds its [`excess`] and the
    /// shed connections come back one by one, each taken by the first worker (in
    /// order) allowed to (as in [`fill`]); until no worker sheds. The counts it ends
    /// with, and how many connections were shed in all.
    fn shed(mut held: Vec<u64>) -> (Vec<u64>, u64) {
        let workers = held.len() as u64;
        let mut shed = 0;
        for _ in 0..100 {
            let total: u64 = held.iter().sum();
            let excesses: Vec<u64> = held
                .iter()
                .map(|&mine| excess(mine, total - mine, workers - 1))
                .collect();
            let round: u64 = excesses.iter().sum();
            if round == 0 {
                return (held, shed);
            }
            shed += round;
            for (mine, excess) in held.iter_mut().zip(excesses) {
                *mine -= excess;
            }
            for _ in 0..round {
                let total: u64 = held.iter().sum();
                let taker = (0..held.len())
                    .find(|&w| may_accept(held[w], total - held[w], workers - 1))
                    .expect("someone may accept");
                held[taker] += 1;
            }
        }
        panic!("still shedding after 100 rounds: {held:?}");
    }

    #[test]
    fn connections_over_the_share_and_its_slack_are_shed() {
        // 16 on 2 workers: the share is 8, the slack 1.
        assert_eq!(excess(16, 0, 1), 7);
        assert_eq!(excess(10, 6, 1), 1);
        assert_eq!(excess(9, 7, 1), 0);
        assert_eq!(excess(8, 8, 1), 0);
        // 8 on 4: the share is 2, the slack 1.
        assert_eq!(excess(8, 0, 3), 5);
        assert_eq!(excess(3, 5, 3), 0);
        // 1,000 on 4: the share is 250, the slack 31.
        assert_eq!(excess(281, 719, 3), 0);
        assert_eq!(excess(282, 718, 3), 1);
        // Alone, a worker keeps everything.
        assert_eq!(excess(1000, 0, 0), 0);
    }

    #[test]
    fn after_a_scale_up_shedding_ends_within_the_slack_after_one_round() {
        assert_eq!(shed(vec![16, 0]), (vec![9, 7], 7));
        assert_eq!(shed(vec![8, 0, 0, 0]), (vec![3, 2, 2, 1], 5));
        assert_eq!(shed(vec![2, 2, 0, 0]), (vec![2, 2, 0, 0], 0));
        assert_eq!(shed(vec![64, 0]), (vec![36, 28], 28));
        assert_eq!(shed(vec![640, 0, 0, 0]), (vec![180, 165, 165, 130], 460));
        // A spread that fair accepting leaves is never shed from.
        for workers in 2..6 {
            for connections in 0..200 {
                let (held, shed) = shed(fill(workers, connections));
                assert_eq!(shed, 0, "{connections} on {workers}: {held:?}");
            }
        }
    }
}
