//! The async ends of a worker's channel: a frame reader, and an outbox whose writer
//! task batches frames.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard};

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{Notify, oneshot};

use super::fd::{recv_with_fds, send_with_fd};
use super::frame::{FrameBuffer, FrameError, encode};
use super::stream::{Stream, WritableWatch};

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
pub(crate) fn into_stream(fd: OwnedFd) -> io::Result<Arc<Stream>> {
    Ok(Arc::new(Stream::new(fd)?))
}

/// Why a channel stopped yielding frames.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadError {
    /// The peer sent something that is not a valid frame.
    #[error(transparent)]
    Frame(FrameError),
    /// The socket failed.
    #[error("channel read failed: {0}")]
    Io(io::Error),
}

/// The most bytes an [`Outbox`] queues: a frame that would take it past this fails
/// with [`FrameError::Backlog`] and is not queued (160 MiB, the writer's batch in hand
/// included: room for the largest handshake). The master treats
/// a worker whose backlog stays over [`BACKLOG_STALL`] as stalled long before.
pub(crate) const MAX_BACKLOG: usize = 160 << 20;

/// A backlog the master tolerates from a worker only briefly (see
/// `master::supervisor`): 32 MiB.
pub(crate) const BACKLOG_STALL: usize = 32 << 20;

/// A write batch kept between batches at most this large.
const KEPT_BATCH: usize = 4 << 20;

/// The most descriptors a reader holds for frames it has not read yet.
const MAX_PENDING_FDS: usize = 8;

/// Reads frames (and any descriptors sent with them) from a channel.
pub(crate) struct FrameReader {
    stream: Arc<Stream>,
    buffer: FrameBuffer,
    fds: VecDeque<OwnedFd>,
    scratch_fds: Vec<OwnedFd>,
    /// Bytes read so far (a long message shows progress before it is whole).
    bytes_read: u64,
}

impl FrameReader {
    pub(crate) fn new(stream: Arc<Stream>) -> Self {
        FrameReader::with_limit(stream, super::frame::MAX_MESSAGE)
    }

    /// A reader that assembles messages of at most `limit` bytes; a larger one is a
    /// [`FrameError::Oversized`] error.
    pub(crate) fn with_limit(stream: Arc<Stream>, limit: usize) -> Self {
        FrameReader {
            stream,
            buffer: FrameBuffer::with_limit(limit),
            fds: VecDeque::new(),
            scratch_fds: Vec::new(),
            bytes_read: 0,
        }
    }

    /// Bytes read from the channel so far.
    pub(crate) fn bytes_read(&self) -> u64 {
        self.bytes_read
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
        let sock = self.stream.fd();
        loop {
            let mut ready = self.stream.readable().await?;
            let buffer = &mut self.buffer;
            let fds = &mut self.scratch_fds;
            // `WouldBlock` clears the readiness, and the loop waits for the next edge.
            let read = ready
                .try_io(|_| buffer.read_with(READ_CHUNK, |spare| recv_with_fds(sock, spare, fds)));
            self.fds.extend(self.scratch_fds.drain(..));
            if self.fds.len() > MAX_PENDING_FDS {
                // Descriptors parked under frames not yet read: never more than a few.
                self.fds.clear();
                return Err(io::Error::other(format!(
                    "more than {MAX_PENDING_FDS} descriptors sent ahead of their frames"
                )));
            }
            match read {
                Ok(Ok(n)) => {
                    self.bytes_read += n as u64;
                    return Ok(n);
                }
                Err(_would_block) => continue,
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
                Ok(Err(e)) => return Err(e),
            }
        }
    }
}

/// The sending end of a channel: frames are encoded straight into one buffer, which a
/// writer task ([`OutboxWriter`]) flushes, so that many frames leave in one write and
/// no frame costs an allocation of its own. Cheap to clone; when the last clone is
/// dropped, the writer flushes what is left and ends.
#[derive(Clone)]
pub(crate) struct Outbox {
    handle: Arc<Handle>,
}

/// Closes the outbox when the last [`Outbox`] clone goes.
struct Handle {
    shared: Arc<Shared>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.wake.notify_one();
    }
}

struct Shared {
    pending: Mutex<Pending>,
    wake: Notify,
    stream: Arc<Stream>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock()
    }

    /// Writes what `pending` holds (one frame, no descriptor) straight to the socket if
    /// it takes it now, and keeps whatever it does not take for the writer. Called with
    /// the lock held and the writer idle, so nothing can be written before or between.
    fn write_inline(&self, pending: &mut Pending) {
        debug_assert!(pending.fds.is_empty() && pending.acks.is_empty());
        let sent = send(self.stream.fd(), &pending.bytes);
        // On `WouldBlock`, `Interrupted` or an error, the writer retries (and reports).
        if let Ok(n) = sent {
            pending.bytes.drain(..n.min(pending.bytes.len()));
        }
    }
}

fn send(sock: std::os::fd::RawFd, bytes: &[u8]) -> io::Result<usize> {
    nix::sys::socket::send(sock, bytes, nix::sys::socket::MsgFlags::MSG_NOSIGNAL)
        .map_err(io::Error::from)
}

#[derive(Default)]
struct Pending {
    bytes: Vec<u8>,
    /// Descriptors to pass, each with the offset in `bytes` of the frame it goes with.
    fds: Vec<(usize, Arc<OwnedFd>)>,
    /// Told once everything before them is written.
    acks: Vec<oneshot::Sender<()>>,
    /// No more frames will come (every sender is gone), or the socket failed.
    closed: bool,
    /// Bytes the writer task took and has not written yet.
    in_writer: usize,
    /// The writer task is parked with nothing in hand, and nothing was queued or written
    /// since: the next frame may be written inline, by its sender (see [`Outbox::push`]).
    writer_idle: bool,
}

impl Outbox {
    /// An outbox for `stream`, and the writer task's body.
    pub(crate) fn new(stream: Arc<Stream>) -> (Outbox, OutboxWriter) {
        let shared = Arc::new(Shared {
            pending: Mutex::default(),
            wake: Notify::new(),
            stream: stream.clone(),
        });
        let outbox = Outbox {
            handle: Arc::new(Handle {
                shared: shared.clone(),
            }),
        };
        (outbox, OutboxWriter { stream, shared })
    }

    fn shared(&self) -> &Shared {
        &self.handle.shared
    }

    /// Queues `msg` as one frame. Dropped silently once the channel is closed (the
    /// peer is going away, and that is noticed elsewhere).
    pub(crate) fn send<T: Serialize>(&self, msg: &T) -> Result<(), FrameError> {
        self.push(None, |bytes| encode(msg, bytes))
    }

    /// Queues `msg` as one frame with `fd` passed alongside it.
    pub(crate) fn send_with_fd<T: Serialize>(
        &self,
        msg: &T,
        fd: Arc<OwnedFd>,
    ) -> Result<(), FrameError> {
        self.push(Some(fd), |bytes| encode(msg, bytes))
    }

    /// Queues frames encoded already (the same broadcast frame for every worker).
    pub(crate) fn send_encoded(&self, frames: &[u8]) -> Result<(), FrameError> {
        self.push(None, |bytes| {
            bytes.extend_from_slice(frames);
            Ok(())
        })
    }

    fn push(
        &self,
        fd: Option<Arc<OwnedFd>>,
        write: impl FnOnce(&mut Vec<u8>) -> Result<(), FrameError>,
    ) -> Result<(), FrameError> {
        let shared = self.shared();
        let mut pending = shared.lock();
        if pending.closed {
            return Ok(());
        }
        let queued = pending.bytes.len() + pending.in_writer;
        if queued > MAX_BACKLOG {
            return Err(FrameError::Backlog { queued });
        }
        let was_idle = pending.bytes.is_empty() && pending.acks.is_empty();
        let offset = pending.bytes.len();
        if let Err(e) = write(&mut pending.bytes) {
            pending.bytes.truncate(offset);
            return Err(e);
        }
        // The frame fits whole or is not queued: the backlog never passes the limit.
        if pending.bytes.len() + pending.in_writer > MAX_BACKLOG {
            pending.bytes.truncate(offset);
            if pending.bytes.capacity() > KEPT_BATCH && offset == 0 {
                pending.bytes = Vec::new();
            }
            return Err(FrameError::Backlog { queued });
        }
        // The first frame after a quiet spell goes out now, from here, rather than
        // waiting for the writer task to be scheduled; the frames that follow it before
        // the writer has run again are batched by the writer as before.
        let inline = was_idle && fd.is_none() && std::mem::take(&mut pending.writer_idle);
        if let Some(fd) = fd {
            pending.fds.push((offset, fd));
        }
        if inline {
            shared.write_inline(&mut pending);
        }
        drop(pending);
        if was_idle {
            shared.wake.notify_one();
        }
        Ok(())
    }

    /// Whether the channel is closed: its socket failed (the peer went away), or every
    /// sender is gone. Sends then do nothing.
    pub(crate) fn is_closed(&self) -> bool {
        self.shared().lock().closed
    }

    /// Bytes queued and not yet written (the writer task's batch in hand included).
    pub(crate) fn backlog(&self) -> usize {
        let pending = self.shared().lock();
        pending.bytes.len() + pending.in_writer
    }

    /// Waits until everything queued so far is written (or the channel closed).
    pub(crate) async fn flush(&self) {
        let (ack, done) = oneshot::channel();
        {
            let mut pending = self.shared().lock();
            if pending.closed {
                return;
            }
            pending.acks.push(ack);
        }
        self.shared().wake.notify_one();
        let _ = done.await;
    }
}

/// Writes what an [`Outbox`] collects.
pub(crate) struct OutboxWriter {
    stream: Arc<Stream>,
    shared: Arc<Shared>,
}

impl OutboxWriter {
    /// Writes until the outbox is closed and empty, or the socket fails (then the
    /// outbox is closed).
    pub(crate) async fn run(self) -> io::Result<()> {
        let result = self.write_all_queued().await;
        let mut pending = self.shared.lock();
        pending.closed = true;
        pending.bytes = Vec::new();
        pending.fds.clear();
        pending.acks.clear();
        result
    }

    async fn write_all_queued(&self) -> io::Result<()> {
        let mut batch = Vec::new();
        let mut fds = Vec::new();
        let mut acks = Vec::new();
        // Held from the first `WouldBlock` of a busy spell until the writer parks.
        let mut watch = None;
        loop {
            let took = {
                let mut pending = self.shared.lock();
                if pending.bytes.is_empty() && pending.acks.is_empty() {
                    if pending.closed {
                        return Ok(());
                    }
                    pending.writer_idle = true;
                    false
                } else {
                    pending.writer_idle = false;
                    std::mem::swap(&mut pending.bytes, &mut batch);
                    pending.in_writer = batch.len();
                    std::mem::swap(&mut pending.fds, &mut fds);
                    std::mem::swap(&mut pending.acks, &mut acks);
                    true
                }
            };
            if !took {
                watch = None;
                self.shared.wake.notified().await;
                continue;
            }
            // A descriptor travels with the first byte of its own frame.
            let mut from = 0;
            for (offset, fd) in fds.drain(..) {
                self.write(&mut watch, &batch[from..offset], None).await?;
                let end = frame_end(&batch, offset);
                self.write(&mut watch, &batch[offset..end], Some(&fd))
                    .await?;
                from = end;
            }
            self.write(&mut watch, &batch[from..], None).await?;
            self.shared.lock().in_writer = 0;
            if batch.capacity() > KEPT_BATCH {
                // A big message passed: give its memory back.
                batch = Vec::new();
            } else {
                batch.clear();
            }
            for ack in acks.drain(..) {
                let _ = ack.send(());
            }
        }
    }

    /// Writes `bytes` (with `fd` passed alongside the first of them), waiting for room
    /// through `watch`, which it registers on the first `WouldBlock`.
    async fn write<'s>(
        &'s self,
        watch: &mut Option<WritableWatch<'s>>,
        mut bytes: &[u8],
        mut fd: Option<&OwnedFd>,
    ) -> io::Result<()> {
        let sock = self.stream.fd();
        while !bytes.is_empty() {
            let sent = match fd {
                Some(fd) => send_with_fd(sock, bytes, fd.as_fd()),
                None => send(sock, bytes),
            };
            match sent {
                Ok(n) => {
                    bytes = &bytes[n..];
                    fd = None;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let watch = match watch {
                        Some(watch) => watch,
                        None => watch.insert(self.stream.watch_writable()?),
                    };
                    // Room again (or an edge from before the `WouldBlock`: then the
                    // next send says so, and this waits for the next edge).
                    watch.writable().await?.clear_ready();
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// Where the frame starting at `offset` ends.
fn frame_end(bytes: &[u8], offset: usize) -> usize {
    let len = bytes
        .get(offset..offset + 4)
        .and_then(|h| h.try_into().ok())
        .map_or(0, |h: [u8; 4]| {
            (u32::from_le_bytes(h) & !(1 << 31)) as usize
        });
    (offset + 4 + len).min(bytes.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    type Msg = (u32, Vec<u8>);

    /// An outbox on one end of a fresh socketpair (its writer spawned), and a reader on
    /// the other.
    fn pair() -> (Outbox, FrameReader) {
        let (ours, theirs) = socketpair().unwrap();
        let (outbox, writer) = Outbox::new(into_stream(ours).unwrap());
        tokio::spawn(writer.run());
        (outbox, FrameReader::new(into_stream(theirs).unwrap()))
    }

    /// Lets the writer task run until it parks.
    async fn settle() {
        for _ in 0..4 {
            tokio::task::yield_now().await;
        }
    }

    /// Bytes waiting in the reader's socket, read without taking them.
    fn waiting(reader: &FrameReader) -> usize {
        let mut buf = [0u8; 4096];
        nix::sys::socket::recv(
            reader.stream.fd(),
            &mut buf,
            nix::sys::socket::MsgFlags::MSG_PEEK | nix::sys::socket::MsgFlags::MSG_DONTWAIT,
        )
        .unwrap_or(0)
    }

    fn msg(n: u32, len: usize) -> Msg {
        (n, vec![n as u8; len])
    }

    #[tokio::test]
    async fn a_frame_that_would_pass_the_backlog_limit_is_refused_whole() {
        let (outbox, _reader) = pair();
        // Bytes as they are: nobody reads them as frames.
        let frame = vec![0u8; 60 << 20];
        // Nobody reads: two fit, the third would take the backlog past the limit.
        outbox.send_encoded(&frame).unwrap();
        outbox.send_encoded(&frame).unwrap();
        let before = outbox.backlog();
        assert!(matches!(
            outbox.send_encoded(&frame),
            Err(FrameError::Backlog { .. })
        ));
        assert!(matches!(
            outbox.send(&serde_bytes::ByteBuf::from(vec![1u8; 41 << 20])),
            Err(FrameError::Backlog { .. })
        ));
        assert_eq!(outbox.backlog(), before);
        assert!(outbox.backlog() <= MAX_BACKLOG);
    }

    #[tokio::test]
    async fn a_frame_on_an_idle_outbox_is_written_inline_and_later_ones_queue_behind_it() {
        let (outbox, mut reader) = pair();
        settle().await;
        outbox.send(&msg(1, 3)).unwrap();
        // Written before the writer task had a chance to run.
        let first = waiting(&reader);
        assert!(first > 0);
        outbox.send(&msg(2, 3)).unwrap();
        outbox
            .send_encoded(&{
                let mut frame = Vec::new();
                encode(&msg(3, 3), &mut frame).unwrap();
                frame
            })
            .unwrap();
        // Queued for the writer, which has not run yet.
        assert_eq!(waiting(&reader), first);
        settle().await;
        outbox.send(&msg(4, 3)).unwrap();
        outbox.flush().await;
        for n in 1..=4 {
            assert_eq!(reader.recv::<Msg>().await.unwrap(), Some(msg(n, 3)));
        }
    }

    #[tokio::test]
    async fn more_descriptors_than_eight_ahead_of_their_frames_break_the_channel() {
        let (outbox, mut reader) = pair();
        let (fd, _keep) = socketpair().unwrap();
        let fd = Arc::new(fd);
        for n in 0..=MAX_PENDING_FDS as u32 {
            outbox.send_with_fd(&msg(n, 1), fd.clone()).unwrap();
        }
        outbox.flush().await;
        // Frames read, their descriptors never taken: the ninth is one too many.
        let mut outcome = Ok(None);
        for _ in 0..=MAX_PENDING_FDS {
            outcome = reader.recv::<Msg>().await;
            if outcome.is_err() {
                break;
            }
        }
        let error = outcome.expect_err("a ninth descriptor ahead of its frame");
        assert!(
            error.to_string().contains("more than 8 descriptors"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn a_descriptor_queued_behind_inline_bytes_goes_with_its_own_frame() {
        let (outbox, reader) = pair();
        settle().await;
        let (fd, _keep) = socketpair().unwrap();
        let fd = Arc::new(fd);
        outbox.send(&msg(1, 1)).unwrap();
        outbox.send(&msg(2, 1)).unwrap();
        outbox.send_with_fd(&msg(3, 1), fd.clone()).unwrap();
        outbox.send(&msg(4, 1)).unwrap();
        outbox.flush().await;
        // A frame with a descriptor never goes inline, even on an idle outbox.
        settle().await;
        let before = waiting(&reader);
        outbox.send_with_fd(&msg(5, 1), fd).unwrap();
        assert_eq!(waiting(&reader), before);
        outbox.send(&msg(6, 1)).unwrap();
        outbox.flush().await;
        // Read frame by frame: each descriptor arrives with the first byte of its own
        // frame, not earlier (with inline bytes) and not later.
        let sock = reader.stream.fd();
        for n in 1..=6 {
            let mut expected = Vec::new();
            encode(&msg(n, 1), &mut expected).unwrap();
            let mut got = vec![0; expected.len()];
            let mut fds = Vec::new();
            let mut read = 0;
            while read < got.len() {
                read += recv_with_fds(sock, &mut got[read..], &mut fds).unwrap();
            }
            assert_eq!(got, expected, "frame {n}");
            assert_eq!(fds.len(), usize::from(n == 3 || n == 5), "frame {n}");
        }
    }

    #[tokio::test]
    async fn an_inline_write_the_socket_takes_only_part_of_is_finished_by_the_writer() {
        let (outbox, mut reader) = pair();
        settle().await;
        // Larger than the socket's buffer: the inline write is partial.
        let big = msg(1, 900 * 1024);
        outbox.send(&big).unwrap();
        assert!(waiting(&reader) > 0);
        outbox.send(&msg(2, 10)).unwrap();
        let read = tokio::spawn(async move {
            let mut got = Vec::new();
            for _ in 0..3 {
                got.push(reader.recv::<Msg>().await.unwrap().unwrap());
            }
            got
        });
        settle().await;
        outbox.send(&msg(3, 10)).unwrap();
        let got = read.await.unwrap();
        assert_eq!(got, vec![big, msg(2, 10), msg(3, 10)]);
    }
}
