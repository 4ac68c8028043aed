//! One end of a channel as the runtime sees it: registered for reading only, with
//! writability watched only while a writer waits for room.
//!
//! A socket registered for writability gets an `EPOLLOUT` edge each time the peer reads
//! and the send buffer has room again, so a process whose channel is registered for
//! both is woken after every read its peer makes, for nothing: the master was woken
//! once per worker after each broadcast, just as the workers needed the two CPUs.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use tokio::io::Interest;
use tokio::io::unix::{AsyncFd, AsyncFdReadyGuard};

/// One end of a channel (a non-blocking `SOCK_STREAM` socketpair end).
pub(crate) struct Stream {
    /// The socket, registered for readability only.
    read: AsyncFd<OwnedFd>,
    /// A duplicate of the same socket, for [`Stream::watch_writable`]: one descriptor
    /// cannot be registered with the same epoll instance twice.
    write: OwnedFd,
}

/// A registration for writability, held by a writer while the socket is full and until
/// it has nothing more to write (dropping it deregisters).
pub(crate) type WritableWatch<'a> = AsyncFd<BorrowedFd<'a>>;

impl Stream {
    /// Makes `fd` non-blocking and registers it with the current runtime.
    pub(crate) fn new(fd: OwnedFd) -> io::Result<Stream> {
        let std = std::os::unix::net::UnixStream::from(fd);
        std.set_nonblocking(true)?;
        let fd = OwnedFd::from(std);
        // `O_NONBLOCK` is shared by the duplicate (it belongs to the open file).
        let write = fd.try_clone()?;
        // SAFETY: the `AsyncFd` owns `fd`, which stays open, and the same descriptor,
        // until it is dropped.
        let read = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }
            .map_err(|e| e.into_parts().1)?;
        Ok(Stream { read, write })
    }

    /// The socket, for `recvmsg`/`sendmsg`.
    pub(crate) fn fd(&self) -> RawFd {
        self.read.get_ref().as_raw_fd()
    }

    /// Waits until the socket may have something to read.
    pub(crate) async fn readable(&self) -> io::Result<AsyncFdReadyGuard<'_, OwnedFd>> {
        self.read.readable().await
    }

    /// Starts watching for room to write. Registering reports the current state, so a
    /// writer that saw `WouldBlock` before calling this misses no edge.
    pub(crate) fn watch_writable(&self) -> io::Result<WritableWatch<'_>> {
        // SAFETY: the borrowed descriptor is open for as long as the watch (which
        // borrows `self`) lives.
        unsafe { AsyncFd::register_with_interest(self.write.as_fd(), Interest::WRITABLE) }
            .map_err(|e| e.into_parts().1)
    }
}
