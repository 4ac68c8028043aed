//! The master's side of the board: makes it once, hands each spawned worker process a
//! slot (the lowest free one, cleared), and clears the slot when the process ends.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::Ordering;

use super::{CELLS, LINE, MAGIC, SLOTS, USED_CELL, slot_base};
use crate::shm::Segment;

/// The cluster's board, as the master holds it.
pub(crate) struct Board {
    segment: Segment,
    /// Inherited by every worker (close-on-exec here; the spawn clears that in the
    /// child).
    fd: OwnedFd,
    /// Which slots belong to a live process.
    taken: Vec<bool>,
}

impl Board {
    /// A new, empty board.
    pub(crate) fn create() -> io::Result<Board> {
        let (segment, fd) = Segment::create("wix-cluster-board", CELLS, MAGIC)?;
        let board = Board {
            segment,
            fd,
            taken: vec![false; SLOTS],
        };
        Ok(board)
    }

    /// The descriptor a worker inherits.
    pub(crate) fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// A free slot for a new process, cleared; `None` when every slot is taken (the
    /// process then accepts as if it were alone).
    pub(crate) fn take(&mut self) -> Option<usize> {
        let slot = self.taken.iter().position(|taken| !taken)?;
        self.clear(slot);
        self.taken[slot] = true;
        self.publish_used();
        Some(slot)
    }

    /// The process in `slot` has ended (or never started): its counts no longer count.
    pub(crate) fn release(&mut self, slot: usize) {
        if let Some(taken) = self.taken.get_mut(slot) {
            *taken = false;
            self.clear(slot);
            self.publish_used();
        }
    }

    fn clear(&self, slot: usize) {
        let base = slot_base(slot);
        if let Some(cells) = self.segment.cells().get(base..base + LINE) {
            for cell in cells {
                cell.store(0, Ordering::Relaxed);
            }
        }
    }

    fn publish_used(&self) {
        let used = self
            .taken
            .iter()
            .rposition(|&taken| taken)
            .map_or(0, |i| i + 1);
        if let Some(cell) = self.segment.cells().get(USED_CELL) {
            cell.store(used as u64, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fair_share::OPEN;

    #[test]
    fn slots_are_reused_lowest_first_and_cleared() {
        let mut board = Board::create().unwrap();
        assert_eq!(board.take(), Some(0));
        assert_eq!(board.take(), Some(1));
        assert_eq!(board.segment.cells()[USED_CELL].load(Ordering::Relaxed), 2);
        board.segment.cells()[slot_base(0) + OPEN].store(5, Ordering::Relaxed);
        board.release(0);
        assert_eq!(
            board.segment.cells()[slot_base(0) + OPEN].load(Ordering::Relaxed),
            0
        );
        assert_eq!(board.segment.cells()[USED_CELL].load(Ordering::Relaxed), 2);
        board.release(1);
        assert_eq!(board.segment.cells()[USED_CELL].load(Ordering::Relaxed), 0);
        assert_eq!(board.take(), Some(0));
        for _ in 1..SLOTS {
            assert!(board.take().is_some());
        }
        assert_eq!(board.take(), None);
    }
}
