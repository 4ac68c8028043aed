//! Shared memory segments: arrays of 64-bit atomic cells that the master creates (a
//! sealed `memfd`), maps, and passes to a worker at spawn, which maps them too. The
//! master keeps its mapping after the worker dies, so what the worker wrote is never
//! lost; the seals (no shrinking, no growing, no further seals) mean that a worker can
//! write garbage into its cells but never make the master's reads fault.
//!
//! Cell 0 of a shared segment is its layout's mark, written by the master at creation
//! and checked by the worker that maps it, so that a worker never reads a segment of
//! another layout (another build) as its own.
//!
//! A [`Segment::local`] one is the same cells in this process's memory only: single-
//! process mode and the master's own instrumentation use it, so that one code path
//! writes and reads every process's cells.

use std::io;
use std::num::NonZeroUsize;
use std::os::fd::OwnedFd;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};

use nix::fcntl::{FcntlArg, SealFlag, fcntl};
use nix::sys::memfd::{MFdFlags, memfd_create};
use nix::sys::mman::{MapFlags, ProtFlags, mmap, mmap_anonymous, munmap};

/// Bytes per cell.
const CELL: usize = std::mem::size_of::<AtomicU64>();

/// A mapped array of atomic cells, unmapped on drop.
pub(crate) struct Segment {
    cells: NonNull<AtomicU64>,
    len: usize,
}

// SAFETY: the mapping is only ever accessed as `AtomicU64`s, which are `Sync`; the
// pointer is valid until drop, which needs ownership.
unsafe impl Send for Segment {}
// SAFETY: as above.
unsafe impl Sync for Segment {}

impl Segment {
    /// A new shared segment of `len` zeroed cells, `name` showing in `/proc/<pid>/maps`
    /// as `memfd:<name>`, its layout's `mark` in cell 0: sealed at that size, mapped
    /// read-write; and its descriptor (close-on-exec), for a child to inherit.
    pub(crate) fn create(name: &str, len: usize, mark: u64) -> io::Result<(Segment, OwnedFd)> {
        let bytes = byte_len(len)?;
        let fd = memfd_create(name, MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING)?;
        nix::unistd::ftruncate(&fd, i64::try_from(bytes.get()).map_err(io::Error::other)?)?;
        fcntl(
            &fd,
            FcntlArg::F_ADD_SEALS(
                SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_SEAL,
            ),
        )?;
        let segment = Segment::map(&fd, len)?;
        if let Some(cell) = segment.cells().first() {
            cell.store(mark, Ordering::Relaxed);
        }
        Ok((segment, fd))
    }

    /// Maps `fd`, a segment of at least `len` cells the master made for this process
    /// with `mark` in cell 0 (its size is checked, so that no cell lies past the file's
    /// end, and its mark, so that it is of the layout expected).
    pub(crate) fn open(fd: OwnedFd, len: usize, mark: u64) -> io::Result<Segment> {
        let size = nix::sys::stat::fstat(&fd)?.st_size;
        let bytes = byte_len(len)?;
        if u64::try_from(size).unwrap_or(0) < bytes.get() as u64 {
            return Err(io::Error::other(format!(
                "a shared segment of {size} bytes, {} expected",
                bytes.get()
            )));
        }
        let segment = Segment::map(&fd, len)?;
        if segment
            .cells()
            .first()
            .is_none_or(|cell| cell.load(Ordering::Relaxed) != mark)
        {
            return Err(io::Error::other(
                "a shared segment of another layout (another build)",
            ));
        }
        Ok(segment)
    }

    /// `len` zeroed cells in this process's memory only.
    pub(crate) fn local(len: usize) -> io::Result<Segment> {
        let bytes = byte_len(len)?;
        // SAFETY: a fresh anonymous mapping at an address the kernel chooses; nothing
        // else refers to it.
        let ptr = unsafe {
            mmap_anonymous(
                None,
                bytes,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_PRIVATE,
            )?
        };
        Ok(Segment {
            cells: ptr.cast(),
            len,
        })
    }

    fn map(fd: &OwnedFd, len: usize) -> io::Result<Segment> {
        let bytes = byte_len(len)?;
        // SAFETY: a shared mapping of a file at least `bytes` long (created so, or its
        // size checked) that cannot shrink (sealed, or the master's own), at an address
        // the kernel chooses.
        let ptr = unsafe {
            mmap(
                None,
                bytes,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
                fd,
                0,
            )?
        };
        Ok(Segment {
            cells: ptr.cast(),
            len,
        })
    }

    /// The cells.
    pub(crate) fn cells(&self) -> &[AtomicU64] {
        // SAFETY: `len` cells, mapped read-write, page-aligned (so aligned for
        // `AtomicU64`), zero-initialised by the kernel, valid until drop.
        unsafe { std::slice::from_raw_parts(self.cells.as_ptr(), self.len) }
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        if let Ok(bytes) = byte_len(self.len) {
            // SAFETY: the mapping made in `map`/`local` with this length; no reference
            // to its cells outlives `self` (they borrow it).
            if let Err(e) = unsafe { munmap(self.cells.cast(), bytes.get()) } {
                tracing::warn!("cannot unmap a shared segment: {e}");
            }
        }
    }
}

fn byte_len(len: usize) -> io::Result<NonZeroUsize> {
    len.checked_mul(CELL)
        .and_then(NonZeroUsize::new)
        .ok_or_else(|| io::Error::other(format!("a segment of {len} cells")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MARK: u64 = 0x5e57;

    #[test]
    fn a_second_mapping_sees_the_first_ones_writes_and_the_size_is_sealed() {
        let (made, fd) = Segment::create("wix-cluster-test", 1024, MARK).unwrap();
        // Neither end can shrink it under the other's mapping.
        assert!(nix::unistd::ftruncate(&fd, 8).is_err());
        let opened = Segment::open(fd, 1024, MARK).unwrap();
        assert_eq!(opened.cells()[0].load(Ordering::Relaxed), MARK);
        made.cells()[1023].store(7, Ordering::Relaxed);
        assert_eq!(opened.cells()[1023].load(Ordering::Relaxed), 7);
        drop(made);
        opened.cells()[1].fetch_add(1, Ordering::Relaxed);
        assert_eq!(opened.cells()[1].load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_segment_smaller_than_asked_or_of_another_mark_is_refused() {
        let (_made, fd) = Segment::create("wix-cluster-test", 16, MARK).unwrap();
        let again = fd.try_clone().unwrap();
        assert!(Segment::open(fd, 17, MARK).is_err());
        assert!(Segment::open(again, 16, MARK + 1).is_err());
        assert_eq!(Segment::local(4).unwrap().cells().len(), 4);
    }
}
