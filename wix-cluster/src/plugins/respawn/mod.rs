//! `Respawn`: replace workers that die, back off slots that keep dying young, and act
//! on cyclic death.

mod backoff;
mod window;

use parking_lot::Mutex;
use std::collections::{BTreeSet, HashSet};
use std::time::{Duration, Instant};

use backoff::{Backoff, Jitter};
use window::DeathWindow;

use crate::{LifecycleEvent, Master, Plugin, WorkerId, WorkerRef};

/// What [`Respawn`] does on cyclic death.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CyclicPolicy {
    /// Stop respawning, keep the surviving workers serving, report the cluster as
    /// failing ([`Master::is_failing`]), and retry one worker after the window; when it
    /// serves again, the other slots are refilled and the cluster is healthy again.
    #[default]
    Degrade,
    /// Stop every worker gracefully; the master exits with code 1.
    Exit,
}

/// Replaces every worker that dies without being asked to, in the same slot (with the
/// next generation). A worker that announces it is going down (app error, panic,
/// SIGTERM) is replaced at once while it drains. A slot whose process could not be
/// started ([`LifecycleEvent::SpawnFailed`]) is retried the same way; a successor that
/// could not be started (a rolling restart's, a recycle's) is not a death and is not
/// retried: the slot's worker keeps serving.
///
/// - Backoff: a slot whose workers keep dying young (within 10 s of their start) waits
///   0, then 100 ms, 200 ms, ... up to 10 s (each ±25% jitter) before its next respawn.
/// - Cyclic death: more than `max_deaths` deaths within `within` (default 10 in 10 s)
///   triggers the [`CyclicPolicy`] (default [`CyclicPolicy::Degrade`]).
#[derive(Debug)]
pub struct Respawn {
    max_deaths: usize,
    policy: CyclicPolicy,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    window: DeathWindow,
    backoff: Backoff,
    jitter: Jitter,
    /// Workers already counted when they announced they were going down.
    announced: HashSet<WorkerRef>,
    /// Slots left empty by [`CyclicPolicy::Degrade`].
    parked: BTreeSet<WorkerId>,
    deaths_total: u64,
}

impl Default for Respawn {
    fn default() -> Self {
        Respawn {
            max_deaths: 10,
            policy: CyclicPolicy::Degrade,
            state: Mutex::new(State {
                window: DeathWindow::new(Duration::from_secs(10)),
                backoff: Backoff::default(),
                jitter: Jitter::seeded(),
                announced: HashSet::new(),
                parked: BTreeSet::new(),
                deaths_total: 0,
            }),
        }
    }
}

impl Respawn {
    /// How many deaths within [`Respawn::within`] are tolerated; one more is cyclic
    /// death. Default 10.
    pub fn max_deaths(mut self, max_deaths: usize) -> Self {
        self.max_deaths = max_deaths;
        self
    }

    /// The window for counting deaths. Default 10 s.
    pub fn within(self, within: Duration) -> Self {
        self.state.lock().window = DeathWindow::new(within);
        self
    }

    /// What to do on cyclic death. Default [`CyclicPolicy::Degrade`].
    pub fn on_cyclic(mut self, policy: CyclicPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// A worker died (`announced`: it said it is going down and is still draining).
    fn on_death(&self, worker: WorkerRef, announced: bool, master: &Master) {
        let now = Instant::now();
        let mut state = self.state.lock();
        if !announced && state.announced.remove(&worker) {
            return; // counted when it announced it
        }
        if announced {
            state.announced.insert(worker);
        }
        state.deaths_total += 1;
        let deaths = state.window.record(now);
        let within = state.window.within();
        if deaths > self.max_deaths {
            match self.policy {
                CyclicPolicy::Degrade => {
                    master.set_failing(true);
                    let first = state.parked.is_empty();
                    state.parked.insert(worker.id);
                    if first {
                        tracing::error!(
                            "cyclic death: {deaths} worker deaths within {within:?} (more than \
                             {}); policy Degrade: not respawning, the surviving workers keep \
                             serving, worker {} is retried in {within:?}",
                            self.max_deaths,
                            worker.id
                        );
                        master.respawn(worker.id, within);
                    } else {
                        tracing::error!(
                            "cyclic death: {deaths} worker deaths within {within:?}; worker {} \
                             is parked until the retried worker serves",
                            worker.id
                        );
                    }
                }
                CyclicPolicy::Exit => {
                    tracing::error!(
                        "cyclic death: {deaths} worker deaths within {within:?} (more than {}); \
                         policy Exit: stopping the cluster",
                        self.max_deaths
                    );
                    master.shutdown(1);
                }
            }
            return;
        }
        let jitter = state.jitter.next();
        let delay = state.backoff.died(worker.id, now, jitter);
        tracing::info!(
            "respawning worker {} in {delay:?} ({deaths} deaths within {within:?}, {} in all)",
            worker.id,
            state.deaths_total
        );
        if announced {
            master.replace(worker, delay);
        } else {
            master.respawn(worker.id, delay);
        }
    }
}

impl Plugin for Respawn {
    fn name(&self) -> &str {
        "Respawn"
    }

    fn on_event(&self, event: &LifecycleEvent, master: &Master) {
        match event {
            LifecycleEvent::Fork(worker) => {
                self.state.lock().backoff.forked(worker.id, Instant::now())
            }
            LifecycleEvent::Listening(worker, _) => {
                let mut state = self.state.lock();
                if !state.parked.is_empty() && state.parked.contains(&worker.id) {
                    let parked = std::mem::take(&mut state.parked);
                    tracing::info!(
                        "worker {} serves again after cyclic death; refilling {} parked slots",
                        worker.id,
                        parked.len() - 1
                    );
                    master.set_failing(false);
                    for id in parked {
                        master.respawn(id, Duration::ZERO);
                    }
                }
            }
            LifecycleEvent::Failing { worker, .. } => self.on_death(*worker, true, master),
            // A successor that could not start leaves the slot's worker serving: no death.
            LifecycleEvent::SpawnFailed {
                worker,
                successor: false,
                ..
            } => {
                // A process that could not start died at birth: young, and counted.
                self.state.lock().backoff.forked(worker.id, Instant::now());
                self.on_death(*worker, false, master);
            }
            LifecycleEvent::Exit {
                worker,
                requested: false,
                ..
            } => self.on_death(*worker, false, master),
            _ => {}
        }
    }
}
