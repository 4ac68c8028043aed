//! The async ends of a worker's channel: a frame reader and a batching frame writer.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::Arc;

use serde::de::DeserializeOwned;
use tokio::io::Interest;
use tokio::net::UnixStream;
use tokio::sync::mpsc;

use super::fd::{recv_with_fds, send_with_fd};
use super::frame::{FrameBuffer, FrameError};

/// Bytes read per `recvmsg`.
const READ_CHUNK: usize = 64 * 1024;

/// Creates the two ends of a worker channel, close-on-exec (the spawner clears the flag
/// on the child's end in the child only).
pub(crate) fn socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType};
    nix::sys::socket::socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(io::Error::from)
}

/// Wraps one end of a channel for tokio.
pub(crate) fn into_stream(fd: OwnedFd) -> io::Result<Arc<UnixStream>> {
    let std = std::os::unix::net::UnixStream::from(fd);
    std.set_nonblocking(true)?;
    Ok(Arc::new(UnixStream::from_std(std)?))
}

/// Why a channel stopped yielding frames.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The peer sent something that is not a valid frame.
    Frame(FrameError),
    /// The socket failed.
    Io(io::Error),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Frame(e) => e.fmt(f),
            ReadError::Io(e) => write!(f, "channel read failed: {e}"),
        }
    }
}

/// Reads frames (and any descriptors sent with them) from a channel.
pub(crate) struct FrameReader {
    stream: Arc<UnixStream>,
    buffer: FrameBuffer,
    fds: VecDeque<OwnedFd>,
    scratch_fds: Vec<OwnedFd>,
}

impl FrameReader {
    pub(crate) fn new(stream: Arc<UnixStream>) -> Self {
        FrameReader {
            stream,
            buffer: FrameBuffer::default(),
            fds: VecDeque::new(),
            scratch_fds: Vec::new(),
        }
    }

    /// The next message, or `None` at end of stream.
    pub(crate) async fn recv<T: DeserializeOwned>(&mut self) -> Result<Option<T>, ReadError> {
        loop {
            if let Some(msg) = self.buffer.next().map_err(ReadError::Frame)? {
                return Ok(Some(msg));
            }
            if self.fill().await.map_err(ReadError::Io)? == 0 {
                return Ok(None);
            }
        }
    }

    /// The oldest descriptor received and not yet taken. Descriptors arrive in the
    /// order they were sent, with the frame that announces them.
    pub(crate) fn take_fd(&mut self) -> Option<OwnedFd> {
        self.fds.pop_front()
    }

    async fn fill(&mut self) -> io::Result<usize> {
        let sock = self.stream.as_raw_fd();
        loop {
            self.stream.readable().await?;
            let buffer = &mut self.buffer;
            let fds = &mut self.scratch_fds;
            let read = self.stream.try_io(Interest::READABLE, || {
                buffer.read_with(READ_CHUNK, |spare| recv_with_fds(sock, spare, fds))
            });
            self.fds.extend(self.scratch_fds.drain(..));
            match read {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

/// One frame to write, with the descriptor to pass alongside it, if any.
#[derive(Default)]
pub(crate) struct Outgoing {
    pub(crate) bytes: Vec<u8>,
    pub(crate) fd: Option<Arc<OwnedFd>>,
    /// Told once everything queued before it (and its own bytes) is written.
    pub(crate) written: Option<tokio::sync::oneshot::Sender<()>>,
}

/// Writes queued frames to a channel, coalescing everything queued into one write.
pub(crate) struct FrameWriter {
    stream: Arc<UnixStream>,
    queue: mpsc::UnboundedReceiver<Outgoing>,
}

impl FrameWriter {
    pub(crate) fn new(stream: Arc<UnixStream>) -> (mpsc::UnboundedSender<Outgoing>, Self) {
        let (tx, queue) = mpsc::unbounded_channel();
        (tx, FrameWriter { stream, queue })
    }

    /// Writes until every sender is gone and the queue is empty, or the socket fails.
    pub(crate) async fn run(mut self) -> io::Result<()> {
        let mut batch = Vec::with_capacity(READ_CHUNK);
        let mut acks = Vec::new();
        while let Some(first) = self.queue.recv().await {
            let mut next = Some(first);
            while let Some(out) = next.take() {
                acks.extend(out.written);
                if let Some(fd) = out.fd {
                    // A descriptor travels with the first byte of its own frame.
                    self.write(&batch, None).await?;
                    batch.clear();
                    self.write(&out.bytes, Some(&fd)).await?;
                } else {
                    batch.extend_from_slice(&out.bytes);
                }
                if batch.len() < READ_CHUNK {
                    next = self.queue.try_recv().ok();
                }
            }
            self.write(&batch, None).await?;
            batch.clear();
            for ack in acks.drain(..) {
                let _ = ack.send(());
            }
        }
        Ok(())
    }

    async fn write(&self, mut bytes: &[u8], mut fd: Option<&OwnedFd>) -> io::Result<()> {
        let sock = self.stream.as_raw_fd();
        while !bytes.is_empty() {
            self.stream.writable().await?;
            let sent = self.stream.try_io(Interest::WRITABLE, || match fd {
                Some(fd) => send_with_fd(sock, bytes, fd.as_fd()),
                None => {
                    nix::sys::socket::send(sock, bytes, nix::sys::socket::MsgFlags::MSG_NOSIGNAL)
                        .map_err(io::Error::from)
                }
            });
            match sent {
                Ok(n) => {
                    bytes = &bytes[n..];
                    fd = None;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}
