//! A worker's exit in words, for the event log: its code or signal, whether the master
//! sent that signal (and why), whether it was asked to stop, what it said going down,
//! and whether the cgroup's OOM killer struck meanwhile.

use nix::sys::signal::Signal;

use crate::event::ExitReason;

/// What the master knows about a worker's end.
pub(crate) struct Ending<'a> {
    pub(crate) reason: ExitReason,
    /// The master asked it to stop (or had replaced it).
    pub(crate) requested: bool,
    /// The master sent it SIGABRT (a stall).
    pub(crate) sent_abort: bool,
    /// Why the master sent it SIGKILL, if it did.
    pub(crate) sent_kill: Option<&'a str>,
    /// What it said when it announced it was going down.
    pub(crate) going_down: Option<&'a str>,
    /// Processes the cgroup's OOM killer killed since the last look.
    pub(crate) oom_kills: Option<u64>,
}

/// The cause of a worker's exit, in words.
pub(crate) fn describe(ending: &Ending<'_>) -> String {
    let mut cause = match ending.reason {
        ExitReason::Code(code) => format!("exited with code {code}"),
        ExitReason::Signal(raw) => {
            let signal = Signal::try_from(raw).ok();
            let name = signal.map_or_else(|| format!("signal {raw}"), |s| s.as_str().to_owned());
            match signal {
                Some(Signal::SIGKILL) => match (ending.sent_kill, ending.oom_kills) {
                    (Some(why), _) => format!("killed by SIGKILL, sent by the master: {why}"),
                    (None, Some(_)) => "killed by SIGKILL, not sent by the master: most \
                                        likely the kernel's OOM killer"
                        .to_owned(),
                    (None, None) => "killed by SIGKILL, not sent by the master: probably \
                                     the OOM killer or an operator (kill -9)"
                        .to_owned(),
                },
                Some(Signal::SIGABRT) if ending.sent_abort => {
                    "killed by SIGABRT, sent by the master: it stalled".to_owned()
                }
                _ => format!("killed by {name}, not sent by the master"),
            }
        }
    };
    cause.push_str(if ending.requested {
        "; it had been asked to stop"
    } else {
        "; unexpected"
    });
    if let Some(said) = ending.going_down {
        cause.push_str(&format!("; it had said it was going down: {said}"));
    }
    if let Some(killed) = ending.oom_kills {
        let s = if killed == 1 { "" } else { "es" };
        cause.push_str(&format!(
            "; the cgroup's OOM killer killed {killed} process{s} around then: it may be one of them"
        ));
    }
    cause
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ending(reason: ExitReason) -> Ending<'static> {
        Ending {
            reason,
            requested: false,
            sent_abort: false,
            sent_kill: None,
            going_down: None,
            oom_kills: None,
        }
    }

    #[test]
    fn a_sigkill_the_master_did_not_send_points_at_the_oom_killer_or_an_operator() {
        let cause = describe(&ending(ExitReason::Signal(9)));
        assert!(
            cause.starts_with("killed by SIGKILL, not sent by the master"),
            "{cause}"
        );
        assert!(cause.contains("OOM killer or an operator"), "{cause}");
    }

    #[test]
    fn a_sigkill_the_master_did_not_send_with_oom_kills_blames_the_oom_killer() {
        let mut end = ending(ExitReason::Signal(9));
        end.oom_kills = Some(2);
        assert_eq!(
            describe(&end),
            "killed by SIGKILL, not sent by the master: most likely the kernel's OOM \
             killer; unexpected; the cgroup's OOM killer killed 2 processes around then: it \
             may be one of them"
        );
    }

    #[test]
    fn a_sigkill_the_master_sent_says_why() {
        let mut end = ending(ExitReason::Signal(9));
        end.sent_kill = Some("it did not stop within the drain timeout (5s)");
        end.requested = true;
        end.oom_kills = Some(1);
        assert_eq!(
            describe(&end),
            "killed by SIGKILL, sent by the master: it did not stop within the drain \
             timeout (5s); it had been asked to stop; the cgroup's OOM killer killed 1 \
             process around then: it may be one of them"
        );
    }

    #[test]
    fn an_exit_code_is_named() {
        assert_eq!(
            describe(&ending(ExitReason::Code(3))),
            "exited with code 3; unexpected"
        );
    }
}
