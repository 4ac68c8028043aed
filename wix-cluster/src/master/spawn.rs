//! Starting a worker: re-exec of this program with the worker marker and one end of a
//! fresh channel, plus the tasks that carry the worker's frames and exit to the loop.

use std::ffi::OsString;
use std::io;
use std::path::PathBuf;

use tokio::sync::mpsc;

use super::reexec::{self, Started};
use crate::WorkerId;
use crate::event::ExitReason;
use crate::ipc::{FrameReader, Outbox};
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
        let mut command = tokio::process::Command::new(&self.exe);
        command.args(&self.args);
        let master_pid = self.master_pid;
        let what = format!("worker {}", key.id);
        let started = reexec::start(
            command,
            ENV_WORKER_MARKER,
            |fd| WorkerMarker::encode(key.id, key.generation, fd, master_pid),
            true,
            what.clone(),
        )?;
        let Started {
            pid,
            child,
            stream,
            out,
        } = started;

        tokio::spawn(read_worker(
            FrameReader::new(stream),
            key,
            self.inbox.clone(),
            out.clone(),
        ));

        let inbox = self.inbox.clone();
        tokio::spawn(async move {
            let reason = reexec::exit_reason(child, pid, &what).await;
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
