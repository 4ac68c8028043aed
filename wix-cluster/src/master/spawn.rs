//! Starting a worker: re-exec of this program with the worker marker and one end of a
//! fresh channel, plus the tasks that carry the worker's frames and exit to the loop.

use std::ffi::OsString;
use std::io;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::Stdio;

use tokio::sync::mpsc;

use crate::WorkerId;
use crate::event::ExitReason;
use crate::ipc::{self, FrameReader, Outbox};
use crate::protocol::ToMaster;
use crate::role::{ENV_WORKER_MARKER, WorkerMarker};

/// One process in one slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Key {
    pub(crate) id: WorkerId,
    pub(crate) generation: u32,
}

/// What a worker's tasks report to the supervision loop.
#[derive(Debug)]
pub(crate) enum Inbound {
    Message(ToMaster),
    /// The worker broke the protocol (malformed or oversized frame, stray descriptor).
    Broken(String),
    /// The channel reached end of stream.
    Closed,
    Exited(ExitReason),
}

/// How to start this program again as a worker.
pub(crate) struct Spawner {
    exe: PathBuf,
    args: Vec<OsString>,
    master_pid: u32,
    inbox: mpsc::UnboundedSender<(Key, Inbound)>,
}

/// A started worker.
pub(crate) struct Spawned {
    pub(crate) pid: u32,
    pub(crate) out: Outbox,
}

impl Spawner {
    /// Resolves this program's path once, at start-up, so that a binary replaced on
    /// disk later is not half-used.
    pub(crate) fn new(inbox: mpsc::UnboundedSender<(Key, Inbound)>) -> io::Result<Spawner> {
        Ok(Spawner {
            exe: std::env::current_exe()?,
            args: std::env::args_os().skip(1).collect(),
            master_pid: std::process::id(),
            inbox,
        })
    }

    /// The program and arguments workers are started from (resolved at start-up).
    pub(crate) fn program(&self) -> (&std::path::Path, &[OsString]) {
        (&self.exe, &self.args)
    }

    pub(crate) fn spawn(&self, key: Key) -> io::Result<Spawned> {
        let (ours, theirs) = ipc::socketpair()?;
        let child_fd = theirs.as_raw_fd();
        let mut command = tokio::process::Command::new(&self.exe);
        command
            .args(&self.args)
            .env(
                ENV_WORKER_MARKER,
                WorkerMarker::encode(key.id, key.generation, child_fd, self.master_pid),
            )
            .stdin(Stdio::null());
        // SAFETY: runs in the child between fork and exec, and only makes two
        // async-signal-safe system calls on values copied in.
        unsafe {
            command.pre_exec(move || {
                // Let the child's end of the channel survive exec (in the child only).
                if nix::libc::fcntl(child_fd, nix::libc::F_SETFD, 0) == -1 {
                    return Err(io::Error::last_os_error());
                }
                if nix::libc::prctl(nix::libc::PR_SET_PDEATHSIG, nix::libc::SIGKILL, 0, 0, 0) == -1
                {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = command.spawn()?;
        drop(theirs);
        let pid = child
            .id()
            .ok_or_else(|| io::Error::other("the worker exited before it could be tracked"))?;
        let stream = ipc::into_stream(ours)?;

        let (out, writer) = Outbox::new(stream.clone());
        tokio::spawn(async move {
            if let Err(e) = writer.run().await {
                tracing::debug!("channel to worker {} failed: {e}", key.id);
            }
        });

        tokio::spawn(read_worker(
            FrameReader::new(stream),
            key,
            self.inbox.clone(),
            out.clone(),
        ));

        let inbox = self.inbox.clone();
        tokio::spawn(async move {
            let reason = match child.wait().await {
                Ok(status) => ExitReason::from(status),
                Err(e) => {
                    tracing::error!("cannot wait for worker {} (pid {pid}): {e}", key.id);
                    ExitReason::Code(-1)
                }
            };
            let _ = inbox.send((key, Inbound::Exited(reason)));
        });

        Ok(Spawned { pid, out })
    }
}

/// Reads a worker's channel: the exchange's traffic goes straight to the hub (once the
/// worker has said hello), everything else to the supervision loop.
async fn read_worker(
    mut reader: FrameReader,
    key: Key,
    inbox: mpsc::UnboundedSender<(Key, Inbound)>,
    out: Outbox,
) {
    let mut greeted = false;
    loop {
        let report = match reader.recv::<ToMaster>().await {
            Ok(Some(_)) if reader.take_fd().is_some() => {
                Inbound::Broken("sent a file descriptor".to_owned())
            }
            Ok(Some(ToMaster::Exchange { topic, payload })) if greeted => {
                if let Ok(hub) = crate::exchange::hub::hub() {
                    hub.deliver(crate::Peer::Worker(key.id), &topic, payload.into());
                }
                continue;
            }
            Ok(Some(ToMaster::Request { id, topic, payload })) if greeted => {
                if let Ok(hub) = crate::exchange::hub::hub() {
                    hub.on_request(key.id, id, topic, payload, out.clone());
                }
                continue;
            }
            Ok(Some(msg)) => {
                greeted |= matches!(msg, ToMaster::Hello { .. });
                Inbound::Message(msg)
            }
            Ok(None) => Inbound::Closed,
            Err(e) => Inbound::Broken(e.to_string()),
        };
        let last = !matches!(report, Inbound::Message(_));
        if inbox.send((key, report)).is_err() || last {
            break;
        }
    }
}

/// Sends `signal` to a worker that has not been reaped yet.
pub(crate) fn signal(pid: u32, signal: nix::sys::signal::Signal) {
    let Ok(raw) = i32::try_from(pid) else { return };
    if let Err(e) = nix::sys::signal::kill(nix::unistd::Pid::from_raw(raw), signal) {
        tracing::debug!("cannot signal pid {pid}: {e}");
    }
}
