//! Watch mode's keeper: the first master, once an upgrade handed the cluster over,
//! stays instead of exiting, so that the process a terminal (or `cargo run`) waits for
//! lives as long as the cluster. It is the child subreaper of everything it started
//! (`PR_SET_CHILD_SUBREAPER`): each later master becomes its child when the master
//! before it exits, and so does every orphan of the cluster's processes (a program an
//! app double-forked). So it keeps a list of the masters it knows: the successor it
//! started, and each one a later master tells it it started, over a datagram socket
//! every master inherits (named in [`ENV_KEEPER`], never passed to workers). It forwards
//! SIGTERM, SIGHUP, SIGUSR1, SIGUSR2, SIGTTIN and SIGTTOU to the masters among its
//! children, ignores SIGINT and SIGQUIT (a terminal sends those to the whole process
//! group, so the current master has them already), reaps every child it gets (the
//! orphans only that: their signals and statuses are not the cluster's), and exits with
//! the last master's exit status once no master is left.

use std::collections::VecDeque;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixDatagram;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

use super::upgrade::Report;
use crate::event::ExitReason;

/// The internal variable naming a master's line to the keeper (a descriptor number).
pub(crate) const ENV_KEEPER: &str = "__WIX_CLUSTER_KEEPER";

/// How often the keeper reaps its children and reads what masters told it.
const REAP_EVERY: Duration = Duration::from_millis(200);

/// The most masters the keeper remembers (the oldest are forgotten first; masters that
/// are gone are forgotten at each look).
const MAX_KNOWN: usize = 64;

/// A master's line to the keeper: a datagram socket to tell it which masters it started.
#[derive(Debug, Clone)]
pub(crate) struct Line(Arc<OwnedFd>);

/// The keeper's end of the line.
pub(crate) struct Hearing(UnixDatagram);

/// Opens the line, on the first master in watch mode.
pub(crate) fn open_line() -> Option<(Hearing, Line)> {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};
    let pair = socketpair(
        AddressFamily::Unix,
        SockType::Datagram,
        None,
        SockFlag::SOCK_CLOEXEC,
    );
    let (ours, theirs) = match pair {
        Ok(pair) => pair,
        Err(e) => {
            tracing::warn!("watch mode: no line to the keeper ({e}); it knows its successor only");
            return None;
        }
    };
    let hearing = UnixDatagram::from(ours);
    if let Err(e) = hearing.set_nonblocking(true) {
        tracing::warn!("watch mode: no line to the keeper ({e}); it knows its successor only");
        return None;
    }
    Some((Hearing(hearing), Line(Arc::new(theirs))))
}

/// Reads and removes [`ENV_KEEPER`]: the line of a later master in watch mode. Must run
/// before any thread exists (it edits the environment).
pub(crate) fn line_from_env() -> Option<Line> {
    let raw = std::env::var_os(ENV_KEEPER)?;
    // SAFETY: called by the master before it starts its runtime or any thread.
    unsafe { std::env::remove_var(ENV_KEEPER) };
    let raw = raw.to_string_lossy();
    let fd = raw.parse::<RawFd>().map_err(|e| e.to_string());
    match fd.and_then(crate::role::adopt_fd) {
        Ok(fd) => Some(Line(Arc::new(fd))),
        Err(e) => {
            tracing::error!("ignoring the internal variable {ENV_KEEPER}={raw:?}: {e}");
            None
        }
    }
}

impl Line {
    /// The descriptor a new master inherits.
    pub(crate) fn fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }

    /// Tells the keeper that this master started the master `pid`.
    pub(crate) fn started(&self, pid: u32) {
        use nix::sys::socket::{MsgFlags, send};
        if let Err(e) = send(self.fd(), &pid.to_le_bytes(), MsgFlags::MSG_DONTWAIT) {
            tracing::warn!("watch mode: cannot tell the keeper about the new master {pid}: {e}");
        }
    }
}

impl Hearing {
    /// Adds what masters said since the last look to `known`.
    fn listen(&self, known: &Mutex<Known>) {
        let mut pid = [0u8; 4];
        loop {
            match self.0.recv(&mut pid) {
                Ok(4) => lock(known).add(u32::from_le_bytes(pid)),
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    tracing::debug!("watch mode: the keeper's line: {e}");
                    return;
                }
            }
        }
    }
}

/// The masters the keeper knows of.
struct Known(VecDeque<u32>);

impl Known {
    fn add(&mut self, pid: u32) {
        if self.0.contains(&pid) {
            return;
        }
        if self.0.len() >= MAX_KNOWN {
            self.0.pop_front();
        }
        self.0.push_back(pid);
    }

    fn contains(&self, pid: u32) -> bool {
        self.0.contains(&pid)
    }

    /// Forgets `pid`; whether it was a master.
    fn forget(&mut self, pid: u32) -> bool {
        let before = self.0.len();
        self.0.retain(|known| *known != pid);
        self.0.len() != before
    }

    /// Forgets the masters that are gone (ended, and reaped by whoever started them).
    fn prune(&mut self) {
        self.0.retain(|pid| crate::procfs::exists(*pid));
    }
}

fn lock(known: &Mutex<Known>) -> std::sync::MutexGuard<'_, Known> {
    known
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Makes this process the reaper of its orphaned descendants (the first master in
/// watch mode, at start).
pub(crate) fn become_subreaper() {
    if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
        tracing::warn!("watch mode: cannot become the subreaper of later masters: {e}");
    }
}

/// Keeps this process until no master is left; `successor` is the master this one
/// handed over to, whose exit arrives on `reports` (tokio reaps it); `hearing` is where
/// later masters say which masters they started.
pub(crate) async fn keep(
    successor: u32,
    mut reports: mpsc::UnboundedReceiver<Report>,
    hearing: Option<Hearing>,
) -> ExitCode {
    tracing::info!(
        "watch mode: the cluster runs in the new master (pid {successor}); this process \
         stays until it ends"
    );
    let known = Arc::new(Mutex::new(Known(VecDeque::from([successor]))));
    let forwarded = [
        (SignalKind::terminate(), Signal::SIGTERM),
        (SignalKind::hangup(), Signal::SIGHUP),
        (SignalKind::user_defined1(), Signal::SIGUSR1),
        (SignalKind::user_defined2(), Signal::SIGUSR2),
        (SignalKind::from_raw(nix::libc::SIGTTIN), Signal::SIGTTIN),
        (SignalKind::from_raw(nix::libc::SIGTTOU), Signal::SIGTTOU),
    ];
    for (kind, forward) in forwarded {
        match signal(kind) {
            Ok(mut deliveries) => {
                let known = known.clone();
                tokio::spawn(async move {
                    while deliveries.recv().await.is_some() {
                        let masters: Vec<u32> = crate::procfs::children()
                            .into_iter()
                            .filter(|child| lock(&known).contains(*child))
                            .collect();
                        for master in masters {
                            crate::master::spawn::signal(master, forward);
                        }
                    }
                });
            }
            Err(e) => tracing::warn!("watch mode: cannot forward {}: {e}", forward.as_str()),
        }
    }
    let _ = crate::signals::ignore(&[SignalKind::interrupt(), SignalKind::quit()]);

    let mut last = ExitReason::Code(0);
    let mut successor_runs = true;
    let mut looks = tokio::time::interval(REAP_EVERY);
    loop {
        tokio::select! {
            report = reports.recv(), if successor_runs => match report {
                Some(Report::Exited { pid, reason }) if pid == successor => {
                    last = reason;
                    successor_runs = false;
                    lock(&known).forget(pid);
                }
                Some(_) => {}
                None => successor_runs = false,
            },
            _ = looks.tick() => {}
        }
        if let Some(hearing) = &hearing {
            hearing.listen(&known);
        }
        for child in crate::procfs::children() {
            if successor_runs && child == successor {
                continue; // tokio reaps it
            }
            let Some(reason) = reap(child) else { continue };
            if lock(&known).forget(child) {
                tracing::info!("watch mode: the master pid {child} ended ({reason})");
                last = reason;
            } else {
                tracing::debug!("watch mode: reaped pid {child}, not a master ({reason})");
            }
        }
        lock(&known).prune();
        let masters_left = crate::procfs::children()
            .into_iter()
            .any(|child| lock(&known).contains(child));
        if !successor_runs && !masters_left {
            break;
        }
    }
    tracing::info!("watch mode: the last master ended ({last}); exiting");
    match last {
        ExitReason::Code(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        ExitReason::Signal(_) => ExitCode::FAILURE,
    }
}

/// Reaps the child `pid` if it has ended: how it ended.
fn reap(pid: u32) -> Option<ExitReason> {
    let raw = i32::try_from(pid).ok()?;
    match waitpid(Pid::from_raw(raw), Some(WaitPidFlag::WNOHANG)) {
        Ok(WaitStatus::Exited(_, code)) => Some(ExitReason::Code(code)),
        Ok(WaitStatus::Signaled(_, signal, _)) => Some(ExitReason::Signal(signal as i32)),
        _ => None,
    }
}
