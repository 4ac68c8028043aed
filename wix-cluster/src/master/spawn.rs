//! Starting a worker: re-exec of this program with the worker marker and one end of a
//! fresh channel, plus the tasks that carry the worker's frames and exit to the loop.

use std::io;

use tokio::sync::mpsc;

use super::program::{Build, Program, Source};
use super::reexec::{self, Started};
use crate::event::{ExitReason, WorkerKey};
use crate::exchange::hub::{Hub, RequestScope, WorkerRequest};
use crate::fair_share::board::Board;
use crate::ipc::{FrameReader, Outbox};
use crate::protocol::ToMaster;
use crate::role::{ENV_WORKER_MARKER, WorkerMarker};
use std::os::fd::{AsRawFd, RawFd};

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

/// How many rolled-in builds may wait for their worker to be ready at once (one per
/// roll step in flight; more are not held, and their workers promote nothing).
const MAX_CANDIDATES: usize = crate::config::MAX_WORKERS;

/// How to start this program again as a worker.
pub(crate) struct Spawner {
    program: Program,
    /// The build the cluster's workers run: respawns, scale-ups and recycles run it.
    held: Build,
    /// Builds of the file on disk a rolling restart started workers from, by worker,
    /// until that worker is ready (then its build becomes the held one) or gone.
    candidates: Vec<(WorkerKey, Build)>,
    master_pid: u32,
    inbox: mpsc::UnboundedSender<(WorkerKey, Inbound)>,
    /// Where the workers' readers route the exchange's traffic.
    hub: &'static Hub,
    /// The fair-accepting board (`crate::fair_share`), when it could be made.
    board: Option<Board>,
    /// The board's slot of each live process that has one (bounded by the board's
    /// slots).
    seats: Vec<(WorkerKey, usize)>,
}

/// A started worker.
pub(crate) struct Spawned {
    pub(crate) pid: u32,
    pub(crate) out: Outbox,
}

impl Spawner {
    /// Workers are started from `held` (this master's own build) and, by rolling
    /// restarts, from `program`'s path (resolved once, at start-up); what they say goes
    /// to `inbox`, their exchange traffic to `hub`.
    pub(crate) fn new(
        program: Program,
        held: Build,
        inbox: mpsc::UnboundedSender<(WorkerKey, Inbound)>,
        hub: &'static Hub,
    ) -> Spawner {
        Spawner {
            program,
            held,
            candidates: Vec::new(),
            master_pid: std::process::id(),
            inbox,
            hub,
            board: match Board::create() {
                Ok(board) => Some(board),
                Err(e) => {
                    tracing::warn!(
                        "cannot make the fair-accepting board ({e}): workers accept without fair sharing"
                    );
                    None
                }
            },
            seats: Vec::new(),
        }
    }

    /// The program workers are started from.
    pub(crate) fn program(&self) -> &Program {
        &self.program
    }

    /// Starts the worker `key`: from the held build, or (`Source::FileOnDisk`, a rolling
    /// restart) from the program file on disk, which the cluster's build becomes once
    /// that worker is ready ([`Spawner::ready`]). The process gets a slot of its own on
    /// the fair-accepting board when one is free.
    pub(crate) fn spawn(&mut self, key: WorkerKey, source: Source) -> io::Result<Spawned> {
        let seat = self.board.as_mut().and_then(Board::take);
        let board = seat.zip(self.board.as_ref().map(Board::fd));
        let spawned = match source {
            Source::ClusterBuild => self.start(key, &self.held, board),
            Source::FileOnDisk => Build::open(self.program.path()).and_then(|build| {
                let spawned = self.start(key, &build, board)?;
                if self.candidates.len() < MAX_CANDIDATES {
                    self.candidates.push((key, build));
                }
                Ok(spawned)
            }),
        };
        match (&spawned, seat) {
            (Ok(_), Some(slot)) => self.seats.push((key, slot)),
            (Err(_), Some(slot)) => self.free_seat(slot),
            (_, None) => {}
        }
        spawned
    }

    fn free_seat(&mut self, slot: usize) {
        if let Some(board) = self.board.as_mut() {
            board.release(slot);
        }
    }

    /// Worker `key` is ready: when it runs a rolled-in build, that build is the
    /// cluster's from now on.
    pub(crate) fn ready(&mut self, key: WorkerKey) {
        if let Some(at) = self.candidates.iter().position(|(k, _)| *k == key) {
            let (_, build) = self.candidates.swap_remove(at);
            if build.describe() != self.held.describe() {
                tracing::info!(
                    "workers start from {} from now on (rolled in)",
                    build.describe()
                );
            }
            self.held = build;
        }
    }

    /// Worker `key` is gone: a rolled-in build it ran and that never got ready is let go.
    /// Its slot on the fair-accepting board is cleared and free for another process.
    pub(crate) fn ended(&mut self, key: WorkerKey) {
        self.candidates.retain(|(k, _)| *k != key);
        if let Some(at) = self.seats.iter().position(|(k, _)| *k == key) {
            let (_, slot) = self.seats.swap_remove(at);
            self.free_seat(slot);
        }
    }

    /// `board`: the fair-accepting board's slot for this process and the board's
    /// descriptor, which the worker inherits.
    fn start(
        &self,
        key: WorkerKey,
        build: &Build,
        board: Option<(usize, RawFd)>,
    ) -> io::Result<Spawned> {
        let mut command = self.program.command_of(build);
        // Secrets and systemd's notification socket are the master's: the workers, and
        // the programs an app starts, never see them.
        command
            .env_remove(crate::config::ENV_ADMIN_TOKEN)
            .env_remove("NOTIFY_SOCKET");
        // SAFETY: only blocks signals (sigprocmask), async-signal-safe, on a set built
        // before the fork.
        unsafe { command.pre_exec(crate::signals::block_in_new_worker()) };
        // A process group of its own, which what the app starts joins: signalled when
        // the worker ends (`master::groups`).
        command.process_group(0);
        let master_pid = self.master_pid;
        let what = format!("worker {}", key.id);
        // The segment its metrics live in: read by this master from now on, inherited
        // by the worker, and kept mapped here after it ends.
        let metrics = crate::metrics::segment_for(key.id, key.generation)?;
        let metrics_fd = metrics.as_raw_fd();
        let mut inherit = vec![metrics_fd];
        inherit.extend(board.map(|(_, fd)| fd));
        let started = reexec::start(
            command,
            ENV_WORKER_MARKER,
            |fd| {
                let board = board.map(|(slot, board)| (board, slot));
                WorkerMarker::encode(key.id, key.generation, fd, master_pid, metrics_fd, board)
            },
            &inherit,
            true,
            what.clone(),
        );
        drop(metrics);
        let started = match started {
            Ok(started) => started,
            Err(e) => {
                crate::metrics::ended(key.id, key.generation);
                return Err(e);
            }
        };
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
