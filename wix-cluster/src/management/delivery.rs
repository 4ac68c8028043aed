//! Whether the client of a long response takes what is sent to it: read from the
//! kernel's view of the connection's TCP socket (`TCP_INFO`), not from our writes.
//!
//! A client that stops reading an event stream still has its kernel acknowledge bytes
//! until its receive window is full; from then on what the stream writes (keep-alive
//! comments, a few bytes each) lands in the master's send buffer, which can hold
//! megabytes, so a write succeeds for hours and the connection never looks idle. What
//! shows the stall is the socket: bytes wait to be sent or acknowledged, and the count
//! of bytes the peer acknowledged (`tcpi_bytes_acked`) stops growing. [`Delivery`]
//! watches that, and aborts the connection once nothing was taken for the idle timeout.

use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::time::Duration;

use tokio::time::Instant;

/// A request extension the management app's server adds to every request: its
/// connection's socket (its descriptor while the connection lives, and its peer, to
/// tell it from a later socket given the same number).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Socket {
    pub(crate) fd: RawFd,
    pub(crate) peer: SocketAddr,
}

/// A copy of a connection's socket descriptor, to read how far its peer got.
pub(crate) struct Delivery {
    socket: TcpStream,
}

/// What `TCP_INFO` says of a socket's sending side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Progress {
    /// Bytes the peer acknowledged so far.
    acked: u64,
    /// Some were sent and not acknowledged yet, or are not sent yet.
    waiting: bool,
}

impl Delivery {
    /// Watches the socket of the request `socket` came with; `None` (logged) when it
    /// cannot be (then only the connection's idle timeout applies).
    pub(crate) fn of(socket: Socket) -> Option<Delivery> {
        // SAFETY: the descriptor is only borrowed to duplicate it at once. It is the
        // connection's while the connection lives, which it does at least while its
        // request is being answered (an HTTP/1 request's handler runs inside it). An
        // HTTP/2 handler runs on a task of its own, so the connection may have closed
        // meanwhile and the number been reused: the peer check below catches that.
        let borrowed = unsafe { BorrowedFd::borrow_raw(socket.fd) };
        let copy = match borrowed.try_clone_to_owned() {
            Ok(copy) => TcpStream::from(copy),
            Err(e) => {
                tracing::debug!("cannot watch an event stream's socket: {e}");
                return None;
            }
        };
        if copy.peer_addr().ok() != Some(socket.peer) {
            tracing::debug!("an event stream's connection closed before it was watched");
            return None;
        }
        let delivery = Delivery { socket: copy };
        delivery.progress().map(|_| delivery)
    }

    /// Resolves once the socket has had bytes waiting for the peer and the peer took
    /// none of them for `idle` (checked every `every`); then the connection is aborted
    /// (reset), so that its task ends and its place is freed.
    pub(crate) async fn until_stalled(self, idle: Duration, every: Duration) {
        let mut last = self.progress();
        let mut stalled_since: Option<Instant> = None;
        loop {
            tokio::time::sleep(every).await;
            let now = self.progress();
            match (last, now) {
                (Some(before), Some(now)) if now.waiting && now.acked == before.acked => {
                    let since = *stalled_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= idle {
                        self.abort();
                        return;
                    }
                }
                // Unreadable now: the connection is gone or going; its task ends.
                (_, None) => return std::future::pending().await,
                _ => stalled_since = None,
            }
            last = now;
        }
    }

    /// Resets the connection: no lingering over bytes the peer will not take, and
    /// both directions shut so that the connection's own writes and reads fail now.
    fn abort(&self) {
        let linger = nix::libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        if let Err(e) =
            nix::sys::socket::setsockopt(&self.socket, nix::sys::socket::sockopt::Linger, &linger)
        {
            tracing::debug!("SO_LINGER on a stalled event stream: {e}");
        }
        if let Err(e) = self.socket.shutdown(Shutdown::Both) {
            tracing::debug!("shutting a stalled event stream's connection: {e}");
        }
    }

    /// The socket's sending side now; `None` when `TCP_INFO` cannot be read or lacks
    /// `tcpi_bytes_acked` (before Linux 4.1).
    fn progress(&self) -> Option<Progress> {
        // SAFETY: all zeroes is a valid `tcp_info` (plain integers).
        let mut info: nix::libc::tcp_info = unsafe { std::mem::zeroed() };
        let size = std::mem::size_of::<nix::libc::tcp_info>();
        let mut len = nix::libc::socklen_t::try_from(size).ok()?;
        // SAFETY: `info` is writable for `len` bytes, and the kernel writes at most
        // `len` bytes and sets `len` to how many it wrote.
        let failed = unsafe {
            nix::libc::getsockopt(
                self.socket.as_raw_fd(),
                nix::libc::IPPROTO_TCP,
                nix::libc::TCP_INFO,
                (&raw mut info).cast(),
                &mut len,
            )
        } != 0;
        let needed = std::mem::offset_of!(nix::libc::tcp_info, tcpi_notsent_bytes)
            + std::mem::size_of::<u32>();
        if failed || usize::try_from(len).ok()? < needed {
            return None;
        }
        Some(Progress {
            acked: info.tcpi_bytes_acked,
            waiting: info.tcpi_unacked > 0 || info.tcpi_notsent_bytes > 0,
        })
    }
}
