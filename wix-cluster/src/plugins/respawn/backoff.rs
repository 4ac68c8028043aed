//! Backoff for a slot whose workers keep dying young: no delay for a first death, then
//! exponential with jitter, capped.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::WorkerId;

/// A worker that lived at least this long did not die young: its slot's streak resets.
pub(super) const YOUNG: Duration = Duration::from_secs(10);
/// The delay after the second young death in a row; doubled for each one after.
pub(super) const BASE: Duration = Duration::from_millis(100);
/// The longest delay.
pub(super) const CAP: Duration = Duration::from_secs(10);

#[derive(Debug, Default)]
pub(super) struct Backoff {
    born: HashMap<WorkerId, Instant>,
    streak: HashMap<WorkerId, u32>,
}

impl Backoff {
    /// Slot `id` got a new worker at `now`.
    pub(super) fn forked(&mut self, id: WorkerId, now: Instant) {
        self.born.insert(id, now);
    }

    /// Slot `id`'s worker died at `now`; returns how long to wait before replacing it.
    /// `jitter` in `[0, 1)` spreads the delay over 75%..125% of its nominal value.
    pub(super) fn died(&mut self, id: WorkerId, now: Instant, jitter: f64) -> Duration {
        let lived = self
            .born
            .get(&id)
            .map_or(Duration::MAX, |&born| now.saturating_duration_since(born));
        let streak = self.streak.entry(id).or_insert(0);
        *streak = if lived < YOUNG { *streak + 1 } else { 1 };
        if *streak <= 1 {
            return Duration::ZERO;
        }
        let doublings = (*streak - 2).min(20);
        let nominal = BASE.saturating_mul(1 << doublings).min(CAP);
        nominal
            .mul_f64(0.75 + 0.5 * jitter.clamp(0.0, 1.0))
            .min(CAP)
    }
}

/// A small xorshift generator for jitter; quality is irrelevant, only spread matters.
#[derive(Debug)]
pub(super) struct Jitter(u64);

impl Jitter {
    pub(super) fn seeded() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos() as u64);
        Jitter(((nanos << 16) ^ u64::from(std::process::id())) | 1)
    }

    /// The next value in `[0, 1)`.
    pub(super) fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: WorkerId = WorkerId(1);

    #[test]
    fn first_death_is_replaced_at_once_then_delays_double_up_to_the_cap() {
        let t0 = Instant::now();
        let mut backoff = Backoff::default();
        let mut now = t0;
        let mut delays = Vec::new();
        for _ in 0..12 {
            backoff.forked(ID, now);
            now += Duration::from_millis(50); // dies young
            let delay = backoff.died(ID, now, 0.5); // jitter 0.5 = nominal
            delays.push(delay);
            now += delay;
        }
        let ms: Vec<u128> = delays.iter().map(Duration::as_millis).collect();
        assert_eq!(
            ms,
            [
                0, 100, 200, 400, 800, 1600, 3200, 6400, 10_000, 10_000, 10_000, 10_000
            ]
        );
    }

    #[test]
    fn a_worker_that_lived_long_resets_its_slot() {
        let t0 = Instant::now();
        let mut backoff = Backoff::default();
        backoff.forked(ID, t0);
        backoff.died(ID, t0 + Duration::from_millis(10), 0.5);
        backoff.forked(ID, t0 + Duration::from_millis(10));
        assert_eq!(backoff.died(ID, t0 + Duration::from_millis(20), 0.5), BASE);
        backoff.forked(ID, t0 + Duration::from_secs(1));
        assert_eq!(
            backoff.died(ID, t0 + Duration::from_secs(1) + YOUNG, 0.5),
            Duration::ZERO
        );
    }

    #[test]
    fn slots_back_off_independently() {
        let t0 = Instant::now();
        let mut backoff = Backoff::default();
        for id in [WorkerId(1), WorkerId(1), WorkerId(1)] {
            backoff.forked(id, t0);
            backoff.died(id, t0, 0.5);
        }
        backoff.forked(WorkerId(2), t0);
        assert_eq!(backoff.died(WorkerId(2), t0, 0.5), Duration::ZERO);
    }

    #[test]
    fn jitter_spreads_the_delay_within_a_quarter_and_never_past_the_cap() {
        let t0 = Instant::now();
        let mut low = Backoff::default();
        let mut high = Backoff::default();
        for _ in 0..2 {
            low.forked(ID, t0);
            high.forked(ID, t0);
        }
        low.died(ID, t0, 0.0);
        high.died(ID, t0, 0.999);
        assert_eq!(low.died(ID, t0, 0.0), Duration::from_millis(75));
        let high_delay = high.died(ID, t0, 0.999);
        assert!(
            high_delay > Duration::from_millis(124) && high_delay <= Duration::from_millis(125)
        );
        let mut jitter = Jitter::seeded();
        for _ in 0..1000 {
            let x = jitter.next();
            assert!((0.0..1.0).contains(&x));
        }
    }
}
