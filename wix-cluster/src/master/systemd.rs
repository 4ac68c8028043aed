//! systemd integration of the master: `Type=notify` readiness, reload, stop and
//! watchdog messages (through the sd-notify crate), and socket activation.
//!
//! Nothing happens unless systemd (or a test) set `NOTIFY_SOCKET`, `WATCHDOG_USEC` or
//! `LISTEN_FDS`/`LISTEN_PID` for this process.

use std::time::Duration;

use sd_notify::NotifyState;

/// What the notifier needs to know about the cluster, after every event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct View {
    pub(crate) ready: usize,
    pub(crate) desired: usize,
    pub(crate) rolling: bool,
    pub(crate) stopping: bool,
}

/// Sends systemd what changed since the last [`View`].
#[derive(Default)]
pub(crate) struct Notifier {
    enabled: bool,
    ready_sent: bool,
    reloading: bool,
    stopping: bool,
    /// An upgrade handed the service to a new master: say nothing more.
    handed_over: bool,
    status: String,
}

impl Notifier {
    pub(crate) fn from_env() -> Notifier {
        Notifier {
            enabled: std::env::var_os("NOTIFY_SOCKET").is_some(),
            ..Notifier::default()
        }
    }

    /// How often to send `WATCHDOG=1`: half of `WATCHDOG_USEC`, when it names us.
    pub(crate) fn watchdog_interval(&self) -> Option<Duration> {
        self.enabled
            .then(sd_notify::watchdog_enabled)
            .flatten()
            .map(|timeout| timeout / 2)
    }

    fn send(&self, states: &[NotifyState<'_>]) {
        if let Err(e) = sd_notify::notify(states) {
            tracing::warn!("cannot notify systemd: {e}");
        }
    }

    /// An upgrade's new master `pid` is ready: it becomes the service's main process
    /// (`MAINPID=`; the unit needs `NotifyAccess=all` for the new master's own
    /// messages), and this master reports nothing more (no `STOPPING=1`).
    pub(crate) fn handed_over(&mut self, pid: u32) {
        if self.enabled && !self.handed_over {
            let status = format!("handed over to the new master (pid {pid})");
            self.send(&[NotifyState::MainPid(pid), NotifyState::Status(&status)]);
        }
        self.handed_over = true;
    }

    pub(crate) fn update(&mut self, view: View) {
        if !self.enabled || self.handed_over {
            return;
        }
        let status = if view.stopping {
            "stopping".to_owned()
        } else {
            format!("{} of {} workers ready", view.ready, view.desired)
        };
        let all_ready = view.ready >= view.desired;
        if view.stopping && !self.stopping {
            self.stopping = true;
            self.send(&[NotifyState::Stopping, NotifyState::Status(&status)]);
        } else if view.rolling && !self.reloading && !view.stopping {
            self.reloading = true;
            let now = NotifyState::monotonic_usec_now();
            let mut states = vec![NotifyState::Reloading, NotifyState::Status(&status)];
            match &now {
                Ok(now) => states.push(now.clone()),
                Err(e) => tracing::warn!("cannot read the monotonic clock for systemd: {e}"),
            }
            self.send(&states);
        } else if !view.stopping
            && all_ready
            && (!self.ready_sent || (self.reloading && !view.rolling))
        {
            self.ready_sent = true;
            self.reloading = false;
            self.send(&[NotifyState::Ready, NotifyState::Status(&status)]);
        } else if status != self.status {
            self.send(&[NotifyState::Status(&status)]);
        }
        self.status = status;
    }

    /// `WATCHDOG=1`, sent only while the cluster is healthy.
    pub(crate) fn watchdog(&self, healthy: bool) {
        if self.enabled && healthy && !self.handed_over {
            self.send(&[NotifyState::Watchdog]);
        }
    }
}
