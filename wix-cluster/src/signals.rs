//! Every signal a cluster's processes may get has a decided meaning; none takes its
//! default action (end or stop the process) uncoordinated.
//!
//! | signal | master | worker | single process |
//! |---|---|---|---|
//! | TERM, QUIT | graceful stop | announce, drain (replaced) | graceful stop |
//! | INT | graceful stop | ignored (the master coordinates) | graceful stop |
//! | HUP | rolling restart | ignored | ignored |
//! | USR2 | master upgrade | ignored | ignored |
//! | TTIN / TTOU | one worker more / fewer | ignored | ignored |
//! | USR1 | logged (logs go to stderr: nothing to reopen) | ignored | logged |
//! | WINCH | ignored | ignored | ignored |
//!
//! "Ignored" is a handler whose deliveries are dropped, not `SIG_IGN`: `SIG_IGN` would
//! be inherited by the programs an app starts, a handler is reset at their exec.

use std::io;

use tokio::signal::unix::{Signal, SignalKind, signal};

/// The signals only a master acts on; a worker ignores them, so that one sent to every
/// process of the cluster (`systemctl kill`, which signals the whole control group) does
/// what the master does with it and nothing else.
pub(crate) const MASTER_ONLY: [SignalKind; 6] = [
    SignalKind::hangup(),
    SignalKind::user_defined1(),
    SignalKind::user_defined2(),
    SignalKind::from_raw(nix::libc::SIGTTIN),
    SignalKind::from_raw(nix::libc::SIGTTOU),
    SignalKind::window_change(),
];

/// The signals a worker ignores: SIGINT and the [`MASTER_ONLY`] ones.
fn worker_ignores() -> nix::sys::signal::SigSet {
    use nix::sys::signal::Signal::*;
    let mut set = nix::sys::signal::SigSet::empty();
    for signal in [SIGINT, SIGHUP, SIGUSR1, SIGUSR2, SIGTTIN, SIGTTOU, SIGWINCH] {
        set.add(signal);
    }
    set
}

/// For a worker about to be started: returns what its child side runs between fork and
/// exec (async-signal-safe) to block the signals a worker ignores. Held across exec,
/// one sent to the whole group while the worker starts stays pending instead of taking
/// its default action (ending the worker) before the worker's handlers exist.
pub(crate) fn block_in_new_worker() -> impl FnMut() -> io::Result<()> + Send + Sync + 'static {
    let set = worker_ignores();
    move || {
        nix::sys::signal::sigprocmask(nix::sys::signal::SigmaskHow::SIG_BLOCK, Some(&set), None)
            .map_err(io::Error::from)
    }
}

/// First thing in a worker, before its runtime: the signals it ignores, held since its
/// start (see [`block_in_new_worker`]), are set to `SIG_IGN` (dropping any that came in
/// the meantime) and unblocked, so that threads started later do not inherit the mask.
/// The runtime's handlers ([`ignore`]) replace `SIG_IGN` before the app runs, so the
/// programs an app starts still get the default actions.
pub(crate) fn release_in_worker() -> io::Result<()> {
    use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, SigmaskHow};
    let set = worker_ignores();
    let ignore = SigAction::new(SigHandler::SigIgn, SaFlags::empty(), SigSet::empty());
    for signal in set.iter() {
        // SAFETY: SIG_IGN is no handler code; nothing else changes this signal's
        // action concurrently (no runtime or other thread exists yet).
        unsafe { nix::sys::signal::sigaction(signal, &ignore) }?;
    }
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_UNBLOCK, Some(&set), None)?;
    Ok(())
}

/// Replaces the default action of each of `kinds` with a handler that drops them.
pub(crate) fn ignore(kinds: &[SignalKind]) -> io::Result<()> {
    for &kind in kinds {
        // tokio keeps a signal's handler installed for the life of the process once
        // registered; with the stream dropped, deliveries are discarded.
        drop(signal(kind)?);
    }
    Ok(())
}

/// SIGTERM or SIGQUIT, whichever comes: both ask for a graceful stop.
pub(crate) struct StopSignals {
    term: Signal,
    quit: Signal,
}

impl StopSignals {
    pub(crate) fn watch() -> io::Result<StopSignals> {
        Ok(StopSignals {
            term: signal(SignalKind::terminate())?,
            quit: signal(SignalKind::quit())?,
        })
    }

    /// The next one, by name.
    pub(crate) async fn recv(&mut self) -> &'static str {
        tokio::select! {
            Some(()) = self.term.recv() => "SIGTERM",
            Some(()) = self.quit.recv() => "SIGQUIT",
            else => std::future::pending().await,
        }
    }
}
