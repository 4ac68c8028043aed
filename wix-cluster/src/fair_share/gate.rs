//! The worker's side of the board: its seat (the slot the master gave it), and the
//! listener [`crate::http::serve`] accepts through, which takes a connection only
//! while this worker holds no more than its fair share ([`super::may_accept`]).
//!
//! Waiting is cheap: a worker over its share sleeps until the shared queue has a
//! connection (readiness of the listener, as any accept loop), then re-reads the board
//! about every millisecond for as long as the connection waits: it takes it once it is
//! allowed to (another worker took connections, or one of its own closed), leaves it
//! once another worker took it, and takes it anyway once it waited for the accept
//! wait (the safety valve: the workers allowed to take it are stopped, blocked or
//! slow, or the board lies).
//!
//! Shedding: every [`TICK`] the seat stamps its slot alive and works out how many
//! connections this process holds above its share plus a slack ([`super::excess`]):
//! that is the budget of responses that close their connection ([`Shed`]). A response
//! costs one relaxed load of the budget while it is 0, the common case.
//!
//! Work shared ([`share_work`], while the autoscaler runs): the seat marks its slot
//! while the process has work in hand, and a process starting work counts the others
//! that have some ([`work_changed`]). The seat is taken even with fair accepting off.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::net::{TcpListener, TcpStream};

use super::{
    ACCEPTING, ALIVE, CELLS, MAGIC, MAX_OPEN, OPEN, SLOTS, STALE_MS, USED_CELL, WORKING,
    may_accept, now_ms, slot_base,
};
use crate::shm::Segment;

/// How often a worker over its share re-reads the board while a connection waits.
const RECHECK: Duration = Duration::from_millis(1);
/// How often a worker stamps its slot as alive and works out its shedding budget.
const TICK: Duration = Duration::from_millis(250);

/// This process's place on the board.
struct Seat {
    board: Segment,
    slot: usize,
    /// Fair accepting is on (an accept wait above 0).
    fair: bool,
    /// The connections this process holds open: the truth, which its slot mirrors.
    open: AtomicU64,
    /// Its accept loops.
    loops: AtomicU64,
    /// The safety valve.
    wait: Duration,
    /// How many more HTTP/1 responses say `connection: close` to shed their connection:
    /// set at each tick.
    budget: AtomicU64,
    /// `wix_cluster_connections_shed_total`.
    shed_total: metrics::Counter,
}

static SEAT: OnceLock<Seat> = OnceLock::new();

/// Whether the seat says when this process has work in hand ([`share_work`]).
static SHARE_WORK: AtomicBool = AtomicBool::new(false);

/// The sockets the master shares with this worker ([`crate::Worker::listen`]), by
/// identity (device and inode): only they are accepted from fairly, since on a socket
/// of the worker's own there is no one to leave a connection to.
static SHARED: std::sync::Mutex<Vec<(u64, u64)>> = std::sync::Mutex::new(Vec::new());
/// More shared sockets than a worker would ask for; past it, one is accepted from as
/// it comes.
const MAX_SHARED: usize = 256;

/// `socket` is one of the master's, shared with the other workers.
pub(crate) fn shared(socket: impl AsFd) {
    let Some(id) = identity(socket) else { return };
    let mut shared = SHARED.lock().unwrap_or_else(|p| p.into_inner());
    if !shared.contains(&id) && shared.len() < MAX_SHARED {
        shared.push(id);
    }
}

fn is_shared(socket: impl AsFd) -> bool {
    identity(socket).is_some_and(|id| {
        SHARED
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&id)
    })
}

fn identity(socket: impl AsFd) -> Option<(u64, u64)> {
    let stat = nix::sys::stat::fstat(socket).ok()?;
    Some((stat.st_dev as u64, stat.st_ino as u64))
}

/// A worker process: takes its seat on the master's board (`fd`, slot `slot`), and
/// accepts fairly unless `wait` is 0 (fair accepting off). Needs the runtime (a task
/// ticks every [`TICK`]: stamps the slot alive and sets the shedding budget).
pub(crate) fn join(fd: OwnedFd, slot: usize, wait: Duration) {
    let Some(seat) = Seat::take(fd, slot, wait) else {
        return;
    };
    if SEAT.set(seat).is_err() {
        return;
    }
    tokio::spawn(async {
        let mut ticks = tokio::time::interval(TICK);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            if let Some(seat) = SEAT.get() {
                seat.tick();
            }
        }
    });
}

impl Seat {
    /// Slot `slot` of the board `fd`; `None`, said, when it cannot be had.
    fn take(fd: OwnedFd, slot: usize, wait: Duration) -> Option<Seat> {
        let fair = !wait.is_zero();
        if !fair {
            tracing::debug!("fair accepting is off");
        }
        if slot >= SLOTS {
            tracing::warn!("slot {slot} is not on the board: accepting without fair sharing");
            return None;
        }
        let board = match Segment::open(fd, CELLS, MAGIC) {
            Ok(board) => board,
            Err(e) => {
                tracing::warn!(
                    "cannot map the master's board ({e}): accepting without fair sharing"
                );
                return None;
            }
        };
        metrics::describe_counter!(
            crate::metrics::CONNECTIONS_SHED,
            "HTTP/1 keep-alive connections closed (after a response saying connection: close) \
         by workers holding more than their fair share of the cluster's connections."
        );
        let shed_total = metrics::counter!(crate::metrics::CONNECTIONS_SHED);
        // Shown from the start, at 0, when it can count.
        if fair {
            shed_total.increment(0);
        }
        let seat = Seat {
            board,
            slot,
            fair,
            open: AtomicU64::new(0),
            loops: AtomicU64::new(0),
            wait,
            budget: AtomicU64::new(0),
            shed_total,
        };
        Some(seat)
    }

    fn store(&self, cell: usize, value: u64) {
        if let Some(cell) = self.board.cells().get(slot_base(self.slot) + cell) {
            cell.store(value, Ordering::Relaxed);
        }
    }

    /// The other processes' slots in use whose liveness stamp is fresh (a stopped or
    /// blocked process's slot, or garbage, is not).
    fn live_others(&self) -> impl Iterator<Item = &[AtomicU64]> {
        let cells = self.board.cells();
        let used = cells
            .get(USED_CELL)
            .map_or(0, |cell| cell.load(Ordering::Relaxed))
            .min(SLOTS as u64) as usize;
        let now = now_ms();
        (0..used)
            .filter(|&slot| slot != self.slot)
            .filter_map(move |slot| cells.get(slot_base(slot)..slot_base(slot) + super::LINE))
            .filter(move |line| {
                let alive = line[ALIVE].load(Ordering::Relaxed);
                alive <= now.saturating_add(STALE_MS) && now.saturating_sub(alive) <= STALE_MS
            })
    }

    /// The other accepting, live processes: the connections they hold in all, and
    /// how many they are. What is read is clamped: a slot can be garbage.
    fn others(&self) -> (u64, u64) {
        let (mut open, mut peers) = (0u64, 0u64);
        for line in self.live_others() {
            if line[ACCEPTING].load(Ordering::Relaxed) == 0 {
                continue;
            }
            open = open.saturating_add(line[OPEN].load(Ordering::Relaxed).min(MAX_OPEN));
            peers += 1;
        }
        (open, peers)
    }

    /// The other live processes with work in hand.
    fn others_working(&self) -> u64 {
        self.live_others()
            .filter(|line| line[WORKING].load(Ordering::Relaxed) != 0)
            .count() as u64
    }

    /// Stamps the slot alive and sets the shedding budget: the connections this process
    /// holds above its share and slack (none while it does not accept, e.g. draining,
    /// or has no accepting peer).
    fn tick(&self) {
        self.store(ALIVE, now_ms());
        let mine = self.open.load(Ordering::Relaxed);
        let excess = if self.loops.load(Ordering::Relaxed) == 0 {
            0
        } else {
            let (others, peers) = self.others();
            let excess = super::excess(mine, others, peers);
            if excess > 0 {
                tracing::debug!(
                    "holding {mine} of {} connections on {} accepting workers: closing \
                     {excess} after their next HTTP/1 responses",
                    mine.saturating_add(others),
                    peers + 1
                );
            }
            excess
        };
        // What the last tick allowed and was not used (connections with no request
        // since) is replaced: the counts are read afresh.
        self.budget.store(excess, Ordering::Relaxed);
    }

    /// Takes one from the shedding budget, if it has any.
    fn take_shed(&self) -> bool {
        let mut left = self.budget.load(Ordering::Relaxed);
        while left > 0 {
            match self.budget.compare_exchange_weak(
                left,
                left - 1,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    self.shed_total.increment(1);
                    return true;
                }
                Err(now) => left = now,
            }
        }
        false
    }

    fn may_accept(&self) -> bool {
        let (others, peers) = self.others();
        may_accept(self.open.load(Ordering::Relaxed), others, peers)
    }

    fn opened(&'static self) -> Held {
        let open = self.open.fetch_add(1, Ordering::Relaxed) + 1;
        self.store(OPEN, open);
        Held(Some(self))
    }
}

/// From now on this process's seat says when it has work in hand, and
/// [`work_changed`] counts the others that have some (the autoscaler runs).
pub(crate) fn share_work() {
    SHARE_WORK.store(true, Ordering::Relaxed);
}

/// This process now has work in hand (`working`) or none: its slot says so, while work
/// is shared. When it has, the processes of the cluster with work in hand now, itself
/// included.
pub(crate) fn work_changed(working: bool) -> Option<u64> {
    if !SHARE_WORK.load(Ordering::Relaxed) {
        return None;
    }
    let seat = SEAT.get()?;
    seat.store(WORKING, u64::from(working));
    working.then(|| 1 + seat.others_working())
}

/// As [`work_changed`], but counts the processes with work in hand now whether or not
/// this one has some (`working`): its slot is set again, in case two threads' changes
/// crossed.
pub(crate) fn working_now(working: bool) -> Option<u64> {
    if !SHARE_WORK.load(Ordering::Relaxed) {
        return None;
    }
    let seat = SEAT.get()?;
    seat.store(WORKING, u64::from(working));
    Some(u64::from(working) + seat.others_working())
}

/// A connection counted on the board until dropped (with its connection).
pub(crate) struct Held(Option<&'static Seat>);

impl Held {
    /// The connection's share of the shedding budget: `Shed::take` says whether a
    /// response should close it.
    pub(crate) fn shed(&self) -> Shed {
        Shed(self.0)
    }
}

/// Whether a response on a connection accepted fairly should close it (`connection:
/// close`) because its process holds more than its share ([`super::excess`]). Never for
/// a connection accepted as it came (single-process mode, fair accepting off, a
/// listener the worker bound itself).
#[derive(Clone, Copy)]
pub(crate) struct Shed(Option<&'static Seat>);

impl Shed {
    /// None: the connection is never shed.
    pub(crate) const NEVER: Shed = Shed(None);

    /// Whether this response closes its connection: takes one from the budget, and
    /// counts it, if there is any. One relaxed load when there is none.
    pub(crate) fn take(self) -> bool {
        self.0.is_some_and(Seat::take_shed)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(seat) = self.0 {
            let open = seat.open.fetch_sub(1, Ordering::Relaxed).saturating_sub(1);
            seat.store(OPEN, open);
        }
    }
}

/// The listener an accept loop takes connections from: fairly on a board, or (single-
/// process mode, fair accepting off, no seat) as it comes.
pub(crate) enum Listener {
    /// Accepts whenever a connection is there.
    Plain(TcpListener),
    /// Accepts within its fair share.
    Fair(Fair),
}

/// A listener on the board.
pub(crate) struct Fair {
    io: AsyncFd<std::net::TcpListener>,
    seat: &'static Seat,
}

impl Listener {
    /// `listener`, accepting fairly if this process has a seat on a board and the
    /// listener is one the master shares.
    pub(crate) fn new(listener: TcpListener) -> io::Result<Listener> {
        let Some(seat) = SEAT.get().filter(|seat| seat.fair && is_shared(&listener)) else {
            return Ok(Listener::Plain(listener));
        };
        let listener = listener.into_std()?;
        // SAFETY: the `AsyncFd` owns the listener, whose descriptor stays open and the
        // same until it is dropped.
        let io = unsafe { AsyncFd::register_with_interest(listener, Interest::READABLE) }
            .map_err(|e| e.into_parts().1)?;
        let loops = seat.loops.fetch_add(1, Ordering::Relaxed) + 1;
        seat.store(ALIVE, now_ms());
        seat.store(ACCEPTING, loops);
        Ok(Listener::Fair(Fair { io, seat }))
    }

    /// Whether connections are accepted fairly.
    pub(crate) fn is_fair(&self) -> bool {
        matches!(self, Listener::Fair(_))
    }

    /// The next connection this worker may take, counted on the board while it is open
    /// (the [`Held`] lives as long as the connection). Cancel-safe.
    pub(crate) async fn accept(&self) -> io::Result<(TcpStream, Held)> {
        match self {
            Listener::Plain(listener) => Ok((listener.accept().await?.0, Held(None))),
            Listener::Fair(fair) => fair.accept().await,
        }
    }
}

impl Fair {
    async fn accept(&self) -> io::Result<(TcpStream, Held)> {
        loop {
            let mut ready = self.io.readable().await?;
            if !self.seat.may_accept() && !self.turn(&mut ready).await {
                continue;
            }
            match ready.try_io(|io| io.get_ref().accept()) {
                Ok(Ok((stream, _peer))) => {
                    let held = self.seat.opened();
                    stream.set_nonblocking(true)?;
                    return Ok((TcpStream::from_std(stream)?, held));
                }
                Ok(Err(e)) => return Err(e),
                // The queue is empty (another worker took the connection): wait again.
                Err(_would_block) => continue,
            }
        }
    }

    /// Waits, over its share, while a connection is in the queue: `true` once this
    /// worker may take it (or the valve says it must), `false` once it is gone.
    async fn turn(
        &self,
        ready: &mut tokio::io::unix::AsyncFdReadyGuard<'_, std::net::TcpListener>,
    ) -> bool {
        let since = tokio::time::Instant::now();
        loop {
            if !has_waiting(self.io.get_ref()) {
                ready.clear_ready();
                return false;
            }
            if self.seat.may_accept() {
                return true;
            }
            if since.elapsed() >= self.seat.wait {
                return true;
            }
            tokio::time::sleep(RECHECK).await;
        }
    }
}

impl Drop for Fair {
    fn drop(&mut self) {
        let loops = self
            .seat
            .loops
            .fetch_sub(1, Ordering::Relaxed)
            .saturating_sub(1);
        self.seat.store(ACCEPTING, loops);
    }
}

/// Whether a connection waits in `listener`'s queue (it is readable), without taking it.
/// An error says yes: the caller then tries to accept, which reports it.
fn has_waiting(listener: &std::net::TcpListener) -> bool {
    let mut poll = nix::libc::pollfd {
        fd: listener.as_raw_fd(),
        events: nix::libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid `pollfd` on the stack, `nfds` 1, no waiting (timeout 0).
    let ready = unsafe { nix::libc::poll(&mut poll, 1, 0) };
    ready != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_sockets_the_master_shares_are_accepted_from_fairly() {
        let theirs = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let own = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        // The worker's copy of the master's socket is another descriptor.
        let copy = theirs.try_clone().unwrap();
        shared(&copy);
        assert!(is_shared(&theirs));
        assert!(!is_shared(&own));
    }

    #[test]
    fn a_seat_counts_the_live_others_with_work_in_hand() {
        let mut board = super::super::board::Board::create().unwrap();
        let seats: Vec<Seat> = (0..3)
            .map(|_| {
                let slot = board.take().unwrap();
                let fd =
                    nix::unistd::dup(unsafe { std::os::fd::BorrowedFd::borrow_raw(board.fd()) })
                        .unwrap();
                let seat = Seat::take(fd, slot, Duration::ZERO).unwrap();
                seat.store(ALIVE, now_ms());
                seat
            })
            .collect();
        assert_eq!(seats[0].others_working(), 0);
        seats[1].store(WORKING, 1);
        seats[2].store(WORKING, 1);
        assert_eq!(seats[0].others_working(), 2);
        assert_eq!(seats[1].others_working(), 1);
        // A process that stopped stamping its slot (stopped, blocked) does not count.
        seats[2].store(ALIVE, now_ms().saturating_sub(STALE_MS + 1000));
        assert_eq!(seats[0].others_working(), 1);
        // A process that ended: the master clears its slot.
        board.release(seats[1].slot);
        assert_eq!(seats[0].others_working(), 0);
    }
}
