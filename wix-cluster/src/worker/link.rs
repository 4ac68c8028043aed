//! The worker's end of its channel: handshake, requests to the master, and the task that
//! reads what the master sends (the exchange's traffic goes to the hub it is given).

use std::io;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::exchange::hub::Hub;
use crate::ipc::{self, Correlation, FrameReader, Outbox};
use crate::protocol::{ListenOn, PROTOCOL_VERSION, ToMaster, ToWorker};

/// How long the master has to answer the hello.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a worker about to exit waits for its last messages to be written.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(1);

/// A worker's channel after the handshake.
pub(crate) struct Connected {
    pub(crate) link: Arc<Link>,
    pub(crate) reader: FrameReader,
    /// How long a drain may take.
    pub(crate) drain_timeout: Duration,
    /// The master's app-scoped data (topic, payload).
    pub(crate) data: Vec<(String, Vec<u8>)>,
}

pub(crate) struct Link {
    out: Outbox,
    /// Requests for listeners waiting for the master's answer.
    listens: Correlation<io::Result<OwnedFd>>,
    ready_sent: AtomicBool,
}

impl Link {
    /// Says hello on `channel` and waits for the master's welcome, which says how long
    /// a drain may take. Spawns the writer.
    pub(crate) async fn connect(channel: OwnedFd) -> io::Result<Connected> {
        let stream = ipc::into_stream(channel)?;
        let mut reader = FrameReader::new(stream.clone());
        let (out, writer) = Outbox::new(stream);
        tokio::spawn(async move {
            if let Err(e) = writer.run().await {
                tracing::debug!("channel to the master failed: {e}");
            }
        });
        let link = Arc::new(Link {
            out,
            listens: Correlation::default(),
            ready_sent: AtomicBool::new(false),
        });
        link.send(&ToMaster::Hello {
            version: PROTOCOL_VERSION,
            pid: std::process::id(),
        });
        // The welcome carries the app data, which may take a while to arrive: give up
        // only when nothing at all arrived for a whole timeout.
        let mut progress = reader.bytes_read();
        let welcome = loop {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, reader.recv::<ToWorker>()).await {
                Ok(welcome) => break welcome,
                Err(_) if reader.bytes_read() > progress => progress = reader.bytes_read(),
                Err(_) => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the master did not answer the hello",
                    ));
                }
            }
        };
        match welcome {
            Ok(Some(ToWorker::Welcome {
                version,
                drain_timeout_ms,
                data,
            })) if version == PROTOCOL_VERSION => Ok(Connected {
                link,
                reader,
                drain_timeout: Duration::from_millis(drain_timeout_ms),
                data: data
                    .into_iter()
                    .map(|(topic, payload)| (topic, payload.into_vec()))
                    .collect(),
            }),
            Ok(Some(ToWorker::Welcome { version, .. })) => Err(io::Error::other(format!(
                "the master speaks protocol {version}, this worker {PROTOCOL_VERSION}"
            ))),
            Ok(Some(other)) => Err(io::Error::other(format!(
                "expected the master's welcome, got a {} message",
                other.kind()
            ))),
            Ok(None) => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the master closed the channel",
            )),
            Err(e) => Err(io::Error::other(e.to_string())),
        }
    }

    /// Queues a message for the master. A closed channel is noticed by the reader.
    pub(crate) fn send(&self, msg: &ToMaster) {
        if let Err(e) = self.out.send(msg) {
            tracing::error!("cannot send a {} message to the master: {e}", msg.kind());
        }
    }

    /// The channel's outgoing queue (for the exchange hub to send through).
    pub(crate) fn outbox(&self) -> Outbox {
        self.out.clone()
    }

    /// Waits (briefly) until everything queued so far is written to the master.
    pub(crate) async fn flush(&self) {
        let _ = tokio::time::timeout(FLUSH_TIMEOUT, self.out.flush()).await;
    }

    /// Asks the master for the shared listener `on`.
    pub(crate) async fn listen(&self, on: ListenOn) -> io::Result<OwnedFd> {
        let pending = self.listens.open();
        self.send(&ToMaster::Listen {
            request: pending.id(),
            on,
        });
        let fd = pending
            .answer()
            .await
            .ok_or_else(|| io::Error::new(io::ErrorKind::BrokenPipe, "the master went away"))??;
        if !self.ready_sent.swap(true, Ordering::Relaxed) {
            self.send(&ToMaster::Ready);
        }
        Ok(fd)
    }

    /// Reads the master's messages until the channel ends; the exchange's go to `hub`.
    /// `on_shutdown` runs when the master asks the worker to stop (with why), or says its
    /// drain's time is up (`None`). When the master is
    /// gone the process exits: a worker never outlives its master.
    pub(crate) async fn read_loop(
        self: Arc<Self>,
        mut reader: FrameReader,
        hub: &'static Hub,
        on_shutdown: impl Fn(Option<crate::StopReason>),
    ) {
        loop {
            match reader.recv::<ToWorker>().await {
                Ok(Some(ToWorker::Listener { request, addr })) => {
                    let fd = reader.take_fd().ok_or_else(|| {
                        io::Error::other(format!(
                            "the master's listener for {addr} came without a descriptor"
                        ))
                    });
                    self.answer(request, fd);
                }
                Ok(Some(ToWorker::ListenFailed { request, error })) => {
                    self.answer(request, Err(io::Error::other(error)));
                }
                Ok(Some(ToWorker::Shutdown { why })) => {
                    tracing::info!("the master asked this worker to stop ({why:?})");
                    on_shutdown(Some(why));
                }
                Ok(Some(ToWorker::Hurry)) => {
                    tracing::info!(
                        "the master says this worker's drain is over: closing what is left"
                    );
                    on_shutdown(None);
                }
                Ok(Some(ToWorker::Welcome { .. })) => {
                    tracing::warn!("ignoring a second welcome from the master");
                }
                Ok(Some(ToWorker::Exchange { topic, payload })) => {
                    hub.deliver(crate::Peer::Master, &topic, payload.into());
                }
                Ok(Some(ToWorker::Response { id, result })) => {
                    hub.complete(id, result.map(serde_bytes::ByteBuf::into_vec));
                }
                Ok(Some(ToWorker::Data { topic, payload })) => {
                    hub.set_data(&topic, payload, None);
                }
                Ok(None) => {
                    tracing::error!("the master is gone; exiting");
                    std::process::exit(1);
                }
                Err(e) => {
                    tracing::error!("the channel to the master broke ({e}); exiting");
                    std::process::exit(1);
                }
            }
        }
    }

    fn answer(&self, request: u64, result: io::Result<OwnedFd>) {
        if self.listens.complete(request, result).is_err() {
            tracing::warn!("the master answered request {request}, which nobody is waiting for");
        }
    }
}
