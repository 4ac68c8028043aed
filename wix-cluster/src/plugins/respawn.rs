//! `Respawn`: replace workers that die on their own; stop when they die in a loop.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::{LifecycleEvent, Master, Plugin};

/// Replaces every worker that exits without being asked to, in the same slot.
///
/// Cyclic death: more than `max_deaths` deaths within `within` (default 10 in 10 s, the
/// original's) stops the immediate respawns; the surviving workers keep serving and one
/// respawn is retried after `within`.
#[derive(Debug)]
pub struct Respawn {
    max_deaths: usize,
    within: Duration,
    deaths: Mutex<VecDeque<Instant>>,
}

impl Default for Respawn {
    fn default() -> Self {
        Respawn {
            max_deaths: 10,
            within: Duration::from_secs(10),
            deaths: Mutex::new(VecDeque::new()),
        }
    }
}

impl Respawn {
    /// How many deaths within [`Respawn::within`] are tolerated. Default 10.
    pub fn max_deaths(mut self, max_deaths: usize) -> Self {
        self.max_deaths = max_deaths;
        self
    }

    /// The window for counting deaths. Default 10 s.
    pub fn within(mut self, within: Duration) -> Self {
        self.within = within;
        self
    }

    /// Records a death now; returns how many fall within the window.
    fn record_death(&self, now: Instant) -> usize {
        let mut deaths = self.deaths.lock().unwrap_or_else(|p| p.into_inner());
        deaths.push_back(now);
        while deaths
            .front()
            .is_some_and(|&first| now.duration_since(first) > self.within)
        {
            deaths.pop_front();
        }
        deaths.len()
    }
}

impl Plugin for Respawn {
    fn name(&self) -> &str {
        "Respawn"
    }

    fn on_event(&self, event: &LifecycleEvent, master: &Master) {
        let LifecycleEvent::Exit {
            worker,
            requested: false,
            ..
        } = event
        else {
            return;
        };
        let deaths = self.record_death(Instant::now());
        if deaths > self.max_deaths {
            tracing::error!(
                "cyclic death: {deaths} worker deaths within {:?}; not respawning worker {} \
                 until {:?} have passed",
                self.within,
                worker.id,
                self.within
            );
            master.respawn(worker.id, self.within);
        } else {
            tracing::info!("respawning worker {}", worker.id);
            master.respawn(worker.id, Duration::ZERO);
        }
    }
}
