//! Master upgrade without closing the port (SIGUSR2, [`Master::upgrade`]).
//!
//! The old master starts a new master from the binary on disk, with one end of a fresh
//! Unix socket named in [`ENV_UPGRADE`]. Over it, the old master hands every listening
//! socket (the app's and the management app's) with `SCM_RIGHTS`; the new master adopts
//! them in place of binding, spawns its workers (which accept from the same kernel
//! queues at once) and answers `Ready` once all of them are ready. Only then does the
//! old master drain its own workers and exit. The port is never closed: some process
//! holds each socket all along.
//!
//! The new master is not tied to the old one's life (no parent-death signal), stays in
//! its process group, and inherits its environment and arguments.
//!
//! [`Master::upgrade`]: crate::Master::upgrade

use std::io;
use std::net::SocketAddr;
use std::os::fd::{OwnedFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::RunTimeChanges;
use super::keeper::{ENV_KEEPER, Line};
use super::listeners::{Bound, Listeners};
use super::program::Program;
use super::reexec::{self, Started};
use crate::event::ExitReason;
use crate::ipc::{self, FrameReader, Outbox};

/// The internal variable naming the new master's end of the upgrade channel:
/// `<fd>:<old master pid>`.
pub(crate) const ENV_UPGRADE: &str = "__WIX_CLUSTER_UPGRADE";

/// How often the old master sends its metrics' totals to the new one.
const TOTALS_EVERY: Duration = Duration::from_millis(500);

/// The gauge of the loops sending totals to a new master now (one while an upgrade
/// hands over; none once the new master took over or failed).
pub(crate) const TOTALS_LOOPS: &str = "wix_cluster_upgrade_totals_loops";

/// Counts a totals loop while it runs, in [`TOTALS_LOOPS`].
struct TotalsLoop;

static TOTALS_LOOPS_LIVE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

impl TotalsLoop {
    fn start() -> TotalsLoop {
        let live = TOTALS_LOOPS_LIVE.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        ::metrics::gauge!(TOTALS_LOOPS).set(live as f64);
        TotalsLoop
    }
}

impl Drop for TotalsLoop {
    fn drop(&mut self) {
        let live = TOTALS_LOOPS_LIVE.fetch_sub(1, std::sync::atomic::Ordering::Relaxed) - 1;
        ::metrics::gauge!(TOTALS_LOOPS).set(live as f64);
        tracing::debug!("a metrics totals loop ended ({live} left)");
    }
}

/// How long the new master waits for the old one to hand its sockets over.
const RECEIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// Old master -> new master.
#[derive(Debug, Serialize, Deserialize)]
enum Handing {
    /// An app listener (its descriptor travels with the frame), with the addresses
    /// workers asked for that it answers (several for port 0: the one asked and the one
    /// bound; none for a socket from systemd no worker asked for yet).
    Listener {
        requested: Vec<SocketAddr>,
        addr: SocketAddr,
        /// Its `LISTEN_FDNAMES` name, for a socket from systemd.
        name: Option<String>,
    },
    /// The management app's listener (its descriptor travels with the frame).
    Management { addr: SocketAddr },
    /// What the old master changed at run time (a scaled worker count, ...).
    Changes(RunTimeChanges),
    /// Every socket has been handed.
    Done,
    /// The cluster's counter and histogram totals, for the new master to go on from:
    /// each replaces the one before. Sent after `Done`, and again every
    /// [`TOTALS_EVERY`] while the old master lives (read after `Done`, without holding
    /// the start-up up), so that masters of builds without it still understand the
    /// handover.
    Metrics(Vec<(crate::metrics::SeriesKey, crate::metrics::Total)>),
}

/// New master -> old master.
#[derive(Debug, Serialize, Deserialize)]
enum Answer {
    /// Every desired worker of the new master is ready.
    Ready { pid: u32, workers: usize },
}

/// What the old master's loop hears about the new master.
#[derive(Debug)]
pub(crate) enum Report {
    Ready {
        pid: u32,
        workers: usize,
    },
    /// The channel of the new master `pid` closed or broke before `Ready`.
    Lost {
        pid: u32,
        why: String,
    },
    /// The new master `pid` ended.
    Exited {
        pid: u32,
        reason: ExitReason,
    },
}

/// The old master's side: a new master started and handed the sockets.
pub(crate) struct Successor {
    pub(crate) pid: u32,
    /// Kept so that the channel stays open until the upgrade ends.
    _out: Outbox,
}

/// Starts the new master from `program`'s path and hands it `listeners` and the
/// management app's socket; its reports arrive on `reports`. In watch mode, the new
/// master inherits the `keeper` line, which hears of it.
pub(crate) fn start(
    program: &Program,
    listeners: &Listeners,
    management: Option<(SocketAddr, Arc<OwnedFd>)>,
    changes: RunTimeChanges,
    reports: mpsc::UnboundedSender<Report>,
    keeper: Option<&Line>,
) -> io::Result<Successor> {
    let mut command = program.command();
    if let Some(line) = keeper {
        command.env(ENV_KEEPER, line.fd().to_string());
    }
    // systemd's watchdog names the main process in WATCHDOG_PID; the new master is
    // about to become it, so it must take the watchdog as its own.
    let own_pid = std::process::id();
    if std::env::var("WATCHDOG_PID").is_ok_and(|pid| pid == own_pid.to_string()) {
        command.env_remove("WATCHDOG_PID");
    }
    // Not tied to this master's life: it is to outlive it.
    let Started {
        pid,
        child,
        stream,
        out,
    } = reexec::start(
        command,
        ENV_UPGRADE,
        |fd| format!("{fd}:{own_pid}"),
        keeper.map(Line::fd).as_slice(),
        false,
        "the new master".to_owned(),
    )?;
    if let Some(line) = keeper {
        line.started(pid);
    }
    for (requested, bound) in listeners.handover() {
        let msg = Handing::Listener {
            requested,
            addr: bound.addr,
            name: bound.name.clone(),
        };
        out.send_with_fd(&msg, bound.fd).map_err(broken)?;
    }
    if let Some((addr, fd)) = management {
        out.send_with_fd(&Handing::Management { addr }, fd)
            .map_err(broken)?;
    }
    out.send(&Handing::Changes(changes)).map_err(broken)?;
    out.send(&Handing::Done).map_err(broken)?;
    out.send(&Handing::Metrics(crate::metrics::totals()))
        .map_err(broken)?;
    // The totals again every half second while this master lives: its workers go on
    // counting until the new master is ready and they have drained, and the new
    // master's sums must never fall below what this one showed.
    let totals_out = out.clone();
    tokio::spawn(async move {
        let _live = TotalsLoop::start();
        // Until the new master is gone (it exited, failed or took over and this one
        // is on its way out): a closed channel takes sends without an error.
        loop {
            tokio::time::sleep(TOTALS_EVERY).await;
            if totals_out.is_closed()
                || totals_out
                    .send(&Handing::Metrics(crate::metrics::totals()))
                    .is_err()
            {
                break;
            }
        }
    });

    let answers = reports.clone();
    tokio::spawn(async move {
        let mut reader = FrameReader::new(stream);
        let report = match reader.recv::<Answer>().await {
            Ok(Some(Answer::Ready { pid, workers })) => Report::Ready { pid, workers },
            Ok(None) => Report::Lost {
                pid,
                why: "it closed the upgrade channel".to_owned(),
            },
            Err(e) => Report::Lost {
                pid,
                why: format!("its upgrade channel broke: {e}"),
            },
        };
        let _ = answers.send(report);
    });
    tokio::spawn(async move {
        let reason = reexec::exit_reason(child, pid, "the new master").await;
        let _ = reports.send(Report::Exited { pid, reason });
    });
    Ok(Successor { pid, _out: out })
}

/// The new master's side: the channel to the master it replaces.
pub(crate) struct Predecessor {
    fd: OwnedFd,
    pid: u32,
}

/// What the new master received.
pub(crate) struct Inherited {
    /// The channel, to answer `Ready` on.
    pub(crate) answer: Outbox,
    /// The management app's socket, if the old master had one.
    pub(crate) management: Option<std::net::TcpListener>,
    /// What the old master changed at run time.
    pub(crate) changes: RunTimeChanges,
}

impl Predecessor {
    /// Reads and removes [`ENV_UPGRADE`]: `Some` when this process is a new master
    /// started by an upgrade. Must run before any thread exists (it edits the
    /// environment). A bad value is logged and ignored (the master binds its own).
    pub(crate) fn take_from_env() -> Option<Predecessor> {
        let raw = std::env::var_os(ENV_UPGRADE)?;
        // SAFETY: called by the master before it starts its runtime or any thread.
        unsafe { std::env::remove_var(ENV_UPGRADE) };
        let raw = raw.to_string_lossy();
        let parsed = raw
            .split_once(':')
            .and_then(|(fd, pid)| Some((fd.parse::<RawFd>().ok()?, pid.parse::<u32>().ok()?)));
        let Some((fd, pid)) = parsed else {
            tracing::error!("ignoring the invalid internal variable {ENV_UPGRADE}={raw:?}");
            return None;
        };
        match crate::role::adopt_fd(fd) {
            Ok(fd) => Some(Predecessor { fd, pid }),
            Err(e) => {
                tracing::error!("ignoring {ENV_UPGRADE}={raw:?}: {e}");
                None
            }
        }
    }

    /// The old master's pid.
    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// Receives the old master's sockets into `listeners`.
    pub(crate) async fn receive(self, listeners: &mut Listeners) -> io::Result<Inherited> {
        let stream = ipc::into_stream(self.fd)?;
        let mut reader = FrameReader::new(stream.clone());
        let mut management = None;
        let mut changes = RunTimeChanges::default();
        let receiving = async {
            loop {
                let msg = reader.recv::<Handing>().await.map_err(broken)?;
                match msg {
                    None => {
                        return Err(io::Error::other(
                            "the old master closed the channel before handing every socket",
                        ));
                    }
                    Some(Handing::Listener {
                        requested,
                        addr,
                        name,
                    }) => {
                        let fd = announced_fd(&mut reader)?;
                        tracing::info!("listening on {addr} (socket from the old master)");
                        listeners.adopt(
                            requested,
                            Bound {
                                addr,
                                fd: Arc::new(fd),
                                name,
                            },
                        );
                    }
                    Some(Handing::Management { addr }) => {
                        let listener = std::net::TcpListener::from(announced_fd(&mut reader)?);
                        tracing::debug!("management app socket {addr} from the old master");
                        management = Some(listener);
                    }
                    Some(Handing::Changes(handed)) => changes = handed,
                    Some(Handing::Metrics(totals)) => crate::metrics::set_predecessor(totals),

                    Some(Handing::Done) => return Ok(()),
                }
            }
        };
        tokio::time::timeout(RECEIVE_TIMEOUT, receiving)
            .await
            .map_err(|_| io::Error::other("the old master handed nothing in time"))??;
        // What the old master sends after the sockets: the metrics' totals.
        tokio::spawn(async move {
            while let Ok(Some(msg)) = reader.recv::<Handing>().await {
                if let Handing::Metrics(totals) = msg {
                    crate::metrics::set_predecessor(totals);
                }
            }
        });
        let (answer, writer) = Outbox::new(stream);
        tokio::spawn(async move {
            if let Err(e) = writer.run().await {
                tracing::debug!("upgrade channel to the old master failed: {e}");
            }
        });
        Ok(Inherited {
            answer,
            management,
            changes,
        })
    }
}

/// The descriptor sent with the frame just read.
fn announced_fd(reader: &mut FrameReader) -> io::Result<OwnedFd> {
    reader
        .take_fd()
        .ok_or_else(|| io::Error::other("a socket was announced without its descriptor"))
}

fn broken(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

/// Tells the old master that every desired worker of this one is ready.
pub(crate) fn answer_ready(answer: &Outbox, workers: usize) {
    let ready = Answer::Ready {
        pid: std::process::id(),
        workers,
    };
    if let Err(e) = answer.send(&ready) {
        tracing::error!("cannot tell the old master that this one is ready: {e}");
    }
}

/// Decodes `bytes` as what an old master hands a new one. For the fuzz targets.
#[cfg(feature = "fuzzing")]
pub(crate) fn fuzz_handing(bytes: &[u8]) {
    let _ = postcard::from_bytes::<Handing>(bytes);
    let _ = postcard::from_bytes::<Answer>(bytes);
}
