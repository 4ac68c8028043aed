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
