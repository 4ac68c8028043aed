//! Starting a worker: re-exec of this program with the worker marker and one end of a
//! fresh channel, plus the tasks that carry the worker's frames and exit to the loop.

use std::io;

use tokio::sync::mpsc;

use super::program::{self, Fallback, Program};
use super::reexec::{self, Started};
use crate::event::{ExitReason, WorkerKey};
use crate::exchange::hub::{Hub, RequestScope, WorkerRequest};
use crate::ipc::{FrameReader, Outbox};
use crate::protocol::ToMaster;
use crate::role::{ENV_WORKER_MARKER, WorkerMarker};

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
    program: Program,
    master_pid: u32,
    inbox: mpsc::UnboundedSender<(WorkerKey, Inbound)>,
    /// Where the workers' readers route the exchange's traffic.
    hub: &'static Hub,
}

/// A started worker.
pub(crate) struct Spawned {
    pub(crate) pid: u32,
    pub(crate) out: Outbox,
}

impl Spawner {
    /// Workers are started from `program` (resolved once, at start-up); what they say
    /// goes to `inbox`, their exchange traffic to `hub`.
    pub(crate) fn new(
        program: Program,
        inbox: mpsc::UnboundedSender<(WorkerKey, Inbound)>,
        hub: &'static Hub,
    ) -> Spawner {
        Spawner {
            program,
            master_pid: std::process::id(),
            inbox,
            hub,
        }
    }

    /// The program workers are started from.
    pub(crate) fn program(&self) -> &Program {
        &self.program
    }

    /// Starts the worker `key` from the program path; when that cannot be executed and
    /// `fallback` allows it, from the running image (with a warning).
    pub(crate) fn spawn(&self, key: WorkerKey, fallback: Fallback) -> io::Result<Spawned> {
        match self.start(key, false) {
            Err(e) if fallback == Fallback::RunningImage && program::cannot_execute(&e) => {
                tracing::warn!(
                    "cannot execute {} ({e}); starting worker {} from the running image instead",
                    self.program.path().display(),
                    key.id
                );
                self.start(key, true)
            }
            started => started,
        }
    }

    fn start(&self, key: WorkerKey, running_image: bool) -> io::Result<Spawned> {
        let mut command = self.program.command(running_image);
        // Secrets and systemd's notification socket are the master's: the workers, and
        // the programs an app starts, never see them.
        command
            .env_remove(crate::config::ENV_ADMIN_TOKEN)
            .env_remove("NOTIFY_SOCKET");
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
            // A worker's messages are exchange messages at most (and small control
            // ones): more is the worker's fault.
            FrameReader::with_limit(stream, crate::exchange::MAX_MESSAGE_BYTES + (64 << 10)),
            key,
            self.inbox.clone(),
            self.hub,
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

/// Reads a worker's channel: the exchange's traffic goes straight to `hub` (once the
/// worker has said hello), everything else to the supervision loop.
async fn read_worker(
    mut reader: FrameReader,
    key: WorkerKey,
    inbox: mpsc::UnboundedSender<(WorkerKey, Inbound)>,
    hub: &'static Hub,
    out: Outbox,
) {
    let mut greeted = false;
    // The worker's requests in the master's hands: given up when this reader ends.
    let requests = RequestScope::default();
    loop {
        let report = match reader.recv::<ToMaster>().await {
            Ok(Some(_)) if reader.take_fd().is_some() => {
                Inbound::Broken("sent a file descriptor".to_owned())
            }
            Ok(Some(ToMaster::Exchange { topic, payload })) if greeted => {
                hub.deliver_from_worker(key, &topic, payload.into()).await;
                continue;
            }
            Ok(Some(ToMaster::Request {
                id,
                topic,
                payload,
                timeout_ms,
            })) if greeted => {
                let request = WorkerRequest {
                    from: key.id,
                    id,
                    topic,
                    payload,
                    timeout: std::time::Duration::from_millis(timeout_ms),
                };
                hub.on_request(request, &requests, out.clone());
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
