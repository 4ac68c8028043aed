//! Counting deaths within a sliding window (cyclic-death detection).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub(super) struct DeathWindow {
    within: Duration,
    deaths: VecDeque<Instant>,
}

impl DeathWindow {
    pub(super) fn new(within: Duration) -> Self {
        DeathWindow {
            within,
            deaths: VecDeque::new(),
        }
    }

    pub(super) fn within(&self) -> Duration {
        self.within
    }

    /// Records a death at `now`; returns how many deaths fall within the window.
    pub(super) fn record(&mut self, now: Instant) -> usize {
        self.deaths.push_back(now);
        while self
            .deaths
            .front()
            .is_some_and(|&first| now.saturating_duration_since(first) > self.within)
        {
            self.deaths.pop_front();
        }
        self.deaths.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_only_deaths_inside_the_window() {
        let t0 = Instant::now();
        let mut window = DeathWindow::new(Duration::from_secs(10));
        for i in 0..10 {
            assert_eq!(
                window.record(t0 + Duration::from_millis(100 * i)),
                i as usize + 1
            );
        }
        // The eleventh death within 10 s: more than 10, cyclic.
        assert_eq!(window.record(t0 + Duration::from_secs(5)), 11);
        // Long after, the old ones no longer count.
        assert_eq!(window.record(t0 + Duration::from_secs(16)), 1);
    }

    #[test]
    fn a_death_exactly_at_the_edge_still_counts() {
        let t0 = Instant::now();
        let mut window = DeathWindow::new(Duration::from_secs(10));
        window.record(t0);
        assert_eq!(window.record(t0 + Duration::from_secs(10)), 2);
        assert_eq!(window.record(t0 + Duration::from_millis(10_001)), 2);
    }
}
