//! Writes coalesced per poll of a connection. hyper writes and flushes each HTTP/1
//! response on its own, so 16 pipelined requests cost 16 writes. A connection's
//! [`Socket`] holds what is written while the connection's future is polled
//! ([`Coalesced`]) and writes it in one go when that poll ends: a pipelined batch
//! leaves in one write, a lone response in one write as before, a streamed chunk at the
//! end of the poll that produced it. Outside such a poll (the stream of an upgraded
//! connection, driven by the app) writes and flushes go straight through, after what
//! is held.
//!
//! hyper's own `pipeline_flush` does the first half and not the second: it skips the
//! flush while its read buffer holds bytes, and a head past `max_header_bytes` stays in
//! that buffer, so its 431 was never written.
//!
//! Bounded: at most [`HOLD`] bytes are held (a write that does not fit first writes what
//! is held, and waits for the client if it must), and a write of [`DIRECT`] bytes or
//! more with nothing held goes straight to the socket (a large body is not copied).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;

use super::Activity;

/// The most bytes held for the end of a poll.
const HOLD: usize = 64 * 1024;
/// A write this large, with nothing held, is not held.
const DIRECT: usize = 16 * 1024;
/// The most room for held bytes a connection keeps once they are written.
const KEPT: usize = 4 * 1024;

/// A connection's socket, shared by its IO ([`Watched`]) and the future polling it
/// ([`Coalesced`]); it tells the connection's [`Activity`] about every byte.
pub(super) struct Socket {
    stream: TcpStream,
    out: Mutex<Out>,
    activity: Arc<Activity>,
}

struct Out {
    /// Written by the connection, not yet to the socket.
    held: Vec<u8>,
    /// The connection's future is being polled: writes are held until it returns.
    polling: bool,
    /// Writing what was held failed: the next write or flush says so.
    failed: Option<io::ErrorKind>,
}

impl Socket {
    pub(super) fn new(stream: TcpStream, activity: Arc<Activity>) -> Arc<Socket> {
        Arc::new(Socket {
            stream,
            out: Mutex::new(Out {
                held: Vec::new(),
                polling: false,
                failed: None,
            }),
            activity,
        })
    }

    /// Writes what is held, as far as the socket takes it; `Pending` (woken when it is
    /// writable) while some is left.
    fn write_held(&self, out: &mut Out, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(kind) = out.failed {
            return Poll::Ready(Err(kind.into()));
        }
        while !out.held.is_empty() {
            match self.stream.try_write(&out.held) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(n) => {
                    self.activity.wrote();
                    out.held.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    ready!(self.stream.poll_write_ready(cx))?;
                }
                Err(e) => {
                    out.held = Vec::new();
                    out.failed = Some(e.kind());
                    return Poll::Ready(Err(e));
                }
            }
        }
        // A burst's buffer is not kept by an idle connection.
        if out.held.capacity() > KEPT {
            out.held = Vec::new();
        }
        Poll::Ready(Ok(()))
    }

    fn write(&self, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        let len = bufs.iter().map(|buf| buf.len()).sum::<usize>();
        let mut out = self.out.lock();
        if out.held.len() + len > HOLD || !out.polling {
            ready!(self.write_held(&mut out, cx))?;
        }
        if out.polling && len < HOLD - out.held.len() && (len < DIRECT || !out.held.is_empty()) {
            for buf in bufs {
                out.held.extend_from_slice(buf);
            }
            return Poll::Ready(Ok(len));
        }
        drop(out);
        loop {
            match self.stream.try_write_vectored(bufs) {
                Ok(n) => {
                    if n > 0 {
                        self.activity.wrote();
                    }
                    return Poll::Ready(Ok(n));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    ready!(self.stream.poll_write_ready(cx))?;
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

/// The connection's IO: reads from the socket, writes through it (held while the
/// connection is polled).
pub(super) struct Watched(pub(super) Arc<Socket>);

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let socket = &self.0;
        loop {
            ready!(socket.stream.poll_read_ready(cx))?;
            let room = buf.remaining();
            let mut short = None;
            // A read that leaves room in `buf` emptied the socket, and epoll (edge-
            // triggered here) reports the next bytes as a new event: the readiness is
            // cleared now (`try_io` sees `WouldBlock`) rather than by one more read that
            // fails with it. tokio's own `TcpStream::poll_read` does the same; without
            // it every request cost a `recvfrom` that returned EAGAIN. The readiness is
            // cleared only if no event came in since this read began.
            let outcome = socket.stream.try_io(Interest::READABLE, || {
                let n = socket.stream.try_read_buf(buf)?;
                if 0 < n && n < room {
                    short = Some(n);
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                Ok(n)
            });
            let n = match (outcome, short) {
                (Ok(n), _) | (Err(_), Some(n)) => n,
                (Err(e), None) if e.kind() == io::ErrorKind::WouldBlock => continue,
                (Err(e), None) => return Poll::Ready(Err(e)),
            };
            if n > 0 {
                socket.activity.read();
            }
            return Poll::Ready(Ok(()));
        }
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.0.write(cx, &[io::IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.0.write(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    /// While the connection is polled, the end of the poll writes; else now.
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut out = self.0.out.lock();
        if out.polling {
            return match out.failed {
                Some(kind) => Poll::Ready(Err(kind.into())),
                None => Poll::Ready(Ok(())),
            };
        }
        self.0.write_held(&mut out, cx)
    }

    /// What is held goes first (a 431 before the close).
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut out = self.0.out.lock();
        ready!(self.0.write_held(&mut out, cx))?;
        drop(out);
        let fd = std::os::fd::AsRawFd::as_raw_fd(&self.0.stream);
        let shut = nix::sys::socket::shutdown(fd, nix::sys::socket::Shutdown::Write);
        Poll::Ready(shut.map_err(io::Error::from))
    }
}

/// A connection's future, whose writes during each poll leave together when it ends.
pub(super) struct Coalesced<F: Future> {
    inner: F,
    socket: Arc<Socket>,
    /// The connection ended with bytes still held: its output, once they are out.
    ended: Option<F::Output>,
}

impl<F: Future> Coalesced<F>
where
    F::Output: Unpin,
{
    pub(super) fn new(inner: F, socket: Arc<Socket>) -> Coalesced<F> {
        Coalesced {
            inner,
            socket,
            ended: None,
        }
    }

    /// The connection itself.
    pub(super) fn inner(self: Pin<&mut Self>) -> Pin<&mut F> {
        self.project().0
    }

    fn project(self: Pin<&mut Self>) -> (Pin<&mut F>, &Arc<Socket>, &mut Option<F::Output>) {
        // SAFETY: `inner` is structurally pinned (never moved out of `self`, nor given
        // out unpinned); the other fields are not pinned (`F::Output` is `Unpin`).
        unsafe {
            let this = self.get_unchecked_mut();
            (
                Pin::new_unchecked(&mut this.inner),
                &this.socket,
                &mut this.ended,
            )
        }
    }
}

impl<F: Future> Future for Coalesced<F>
where
    F::Output: Unpin,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let (inner, socket, ended) = self.project();
        if ended.is_none() {
            socket.out.lock().polling = true;
            let polled = inner.poll(cx);
            socket.out.lock().polling = false;
            if let Poll::Ready(output) = polled {
                *ended = Some(output);
            }
        }
        // A write that fails is the connection's to see, at its next write or flush;
        // one that waits for the client wakes this task when the socket is writable.
        let written = socket.write_held(&mut socket.out.lock(), cx);
        // An upgrade's 101 is out before the app takes the stream over.
        if written.is_pending() {
            return Poll::Pending;
        }
        match ended.take() {
            Some(output) => Poll::Ready(output),
            None => Poll::Pending,
        }
    }
}
