//! When to scale: the autoscaler's decisions from one reading a second, without any
//! process or clock of its own, so that they can be tested as plain values.

use std::time::{Duration, Instant};

/// What one heartbeat's second says about the workers that count (ready, not
/// draining, with a load reading).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Reading {
    /// Their mean busy share, 0 to 1.
    pub(crate) busy: f64,
    /// Clients, summed over the workers: for each, the most work it had in hand at
    /// once or the connections that sent it requests, whichever is more. More than
    /// there are workers means requests waited for each other somewhere.
    pub(crate) peak: u64,
    /// How many they are.
    pub(crate) counted: usize,
}

/// The thresholds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Marks {
    pub(crate) high: f64,
    pub(crate) low: f64,
    pub(crate) up_after: Duration,
    pub(crate) idle_for: Duration,
}

/// Where the cluster stands at a reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Situation {
    /// The workers desired now.
    pub(crate) current: usize,
    /// `(min, max)`, an operator's hold applied.
    pub(crate) bounds: (usize, usize),
    /// Whether a step up may be taken now (no worker starting, memory enough).
    pub(crate) may_up: bool,
    /// Whether a step down may be taken now (no worker starting).
    pub(crate) may_down: bool,
}

/// What to do now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Nothing.
    Hold,
    /// Run `to` workers, for this reason.
    Scale { to: usize, reason: String },
}

/// The most workers one step up starts (php-fpm's cap of its spawn rate).
pub(crate) const MAX_STEP: usize = 32;
/// How long one reading covers: a heartbeat's second.
const READING_SPAN: Duration = Duration::from_secs(1);

/// The streaks the decisions follow.
#[derive(Debug, Default)]
pub(crate) struct Policy {
    /// Since the first reading of the current stretch of pressure.
    pressed_since: Option<Instant>,
    /// The highest mean busy share and peak of that stretch, for the reason.
    pressed_busy: f64,
    /// Since the first reading of the current idle stretch.
    idle_since: Option<Instant>,
    /// The highest mean busy share and peak of that stretch, for the reason.
    idle_busy: f64,
    idle_peak: u64,
    /// How many workers the next step up starts: doubles while the pressure lasts.
    step: usize,
}

impl Policy {
    /// Forgets the streaks: after an operator's scale, a freeze, or a step up (a step
    /// down keeps the idle streak, so that an idle cluster goes down one per tick).
    pub(crate) fn reset(&mut self) {
        *self = Policy::default();
    }

    /// Takes one reading (or `None`: no worker could be read) in `situation`.
    pub(crate) fn decide(
        &mut self,
        now: Instant,
        reading: Option<Reading>,
        situation: Situation,
        marks: &Marks,
    ) -> Decision {
        let Situation {
            current,
            bounds: (min, max),
            may_up,
            may_down,
        } = situation;
        if current < min {
            self.reset();
            return Decision::Scale {
                to: min,
                reason: format!("below the minimum: {current} -> {min}"),
            };
        }
        if current > max {
            self.reset();
            return Decision::Scale {
                to: max,
                reason: format!("above the maximum: {current} -> {max}"),
            };
        }
        let Some(reading) = reading.filter(|reading| reading.counted > 0) else {
            return Decision::Hold;
        };
        let pressed = reading.busy > marks.high && reading.peak > reading.counted as u64;
        if pressed {
            self.idle_since = None;
            let since = *self.pressed_since.get_or_insert(now);
            if since == now {
                self.pressed_busy = 0.0;
            }
            self.pressed_busy = self.pressed_busy.max(reading.busy);
            let lasted = now.saturating_duration_since(since) + READING_SPAN;
            if lasted >= marks.up_after && may_up && current < max {
                let step = self.step.max(1);
                let to = (current + step).min(max);
                self.step = (step * 2).min(MAX_STEP);
                let reason = format!(
                    "busy {:.0}% for {} with {} clients on {}: {current} -> {to}",
                    self.pressed_busy * 100.0,
                    seconds(lasted),
                    reading.peak,
                    workers(reading.counted)
                );
                // The next step needs the pressure to last again, on more workers.
                self.pressed_since = None;
                return Decision::Scale { to, reason };
            }
            return Decision::Hold;
        }
        self.pressed_since = None;
        self.step = 1;
        let fits = reading.peak < current as u64;
        let idle = reading.busy < marks.low || fits;
        if !idle {
            self.idle_since = None;
            return Decision::Hold;
        }
        let since = *self.idle_since.get_or_insert(now);
        if since == now {
            self.idle_busy = 0.0;
            self.idle_peak = 0;
        }
        self.idle_busy = self.idle_busy.max(reading.busy);
        self.idle_peak = self.idle_peak.max(reading.peak);
        let lasted = now.saturating_duration_since(since) + READING_SPAN;
        if lasted >= marks.idle_for && may_down && current > min {
            let to = current - 1;
            let reason = if self.idle_busy < marks.low {
                format!(
                    "busy at most {:.0}% for {}: {current} -> {to}",
                    self.idle_busy * 100.0,
                    seconds(lasted)
                )
            } else {
                format!(
                    "at most {} for {}, fewer than the {current} workers: {current} -> {to}",
                    clients(self.idle_peak),
                    seconds(lasted)
                )
            };
            return Decision::Scale { to, reason };
        }
        Decision::Hold
    }
}

/// `1 client`, `2 clients`.
fn clients(n: u64) -> String {
    if n == 1 {
        "1 client".to_owned()
    } else {
        format!("{n} clients")
    }
}

/// `1 worker`, `2 workers`.
fn workers(n: usize) -> String {
    if n == 1 {
        "1 worker".to_owned()
    } else {
        format!("{n} workers")
    }
}

/// `2s`, `60s`, `1.5s`.
fn seconds(duration: Duration) -> String {
    let secs = duration.as_secs_f64();
    if secs.fract() < 0.05 {
        format!("{secs:.0}s")
    } else {
        format!("{secs:.1}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MARKS: Marks = Marks {
        high: 0.8,
        low: 0.3,
        up_after: Duration::from_secs(2),
        idle_for: Duration::from_secs(60),
    };

    fn situation(
        current: usize,
        bounds: (usize, usize),
        may_up: bool,
        may_down: bool,
    ) -> Situation {
        Situation {
            current,
            bounds,
            may_up,
            may_down,
        }
    }

    /// Feeds one reading a second from `start` and returns every decision that was not
    /// a hold, applying it, as (second, new count).
    fn run(
        policy: &mut Policy,
        count: &mut usize,
        bounds: (usize, usize),
        seconds: u64,
        start: &mut Instant,
        reading: impl Fn(usize) -> Reading,
    ) -> Vec<(u64, usize)> {
        let mut changes = Vec::new();
        for second in 0..seconds {
            let now = *start + Duration::from_secs(second);
            let decision = policy.decide(
                now,
                Some(reading(*count)),
                situation(*count, bounds, true, true),
                &MARKS,
            );
            if let Decision::Scale { to, .. } = decision {
                *count = to;
                changes.push((second, to));
            }
        }
        *start += Duration::from_secs(seconds);
        changes
    }

    /// 16 connections of CPU-bound work: every worker busy, 16 requests at once.
    fn crowded(count: usize) -> Reading {
        Reading {
            busy: 1.0,
            peak: 16,
            counted: count,
        }
    }

    /// One client, one request at a time: one worker fully busy, the others idle.
    fn one_client(count: usize) -> Reading {
        Reading {
            busy: 0.99 / count as f64,
            peak: 1,
            counted: count,
        }
    }

    #[test]
    fn pressure_for_two_seconds_steps_up_by_doubling_to_the_maximum() {
        let (mut policy, mut count, mut start) = (Policy::default(), 1, Instant::now());
        let changes = run(&mut policy, &mut count, (1, 8), 10, &mut start, crowded);
        // 1 + 1, then + 2, then + 4 (capped at 8): one step per two seconds of pressure.
        assert_eq!(changes, vec![(1, 2), (3, 4), (5, 8)]);
    }

    #[test]
    fn one_request_at_a_time_never_scales_up_and_an_idle_cluster_goes_down_one_per_tick() {
        let (mut policy, mut count, mut start) = (Policy::default(), 1, Instant::now());
        assert_eq!(
            run(&mut policy, &mut count, (1, 4), 120, &mut start, one_client),
            vec![]
        );
        count = 4;
        let changes = run(&mut policy, &mut count, (1, 4), 70, &mut start, one_client);
        assert_eq!(changes, vec![(59, 3), (60, 2), (61, 1)]);
    }

    #[test]
    fn a_steady_half_load_neither_flaps_up_nor_down() {
        // Two workers half busy, requests overlapping now and then.
        let half = |count: usize| Reading {
            busy: 0.5,
            peak: 3,
            counted: count,
        };
        let (mut policy, mut count, mut start) = (Policy::default(), 2, Instant::now());
        assert_eq!(
            run(&mut policy, &mut count, (1, 8), 300, &mut start, half),
            vec![]
        );
    }

    #[test]
    fn a_break_in_the_pressure_or_the_idleness_starts_the_wait_again() {
        let (mut policy, count, start) = (Policy::default(), 1, Instant::now());
        let flicker = |second: u64| {
            move |count: usize| {
                if second % 2 == 0 {
                    crowded(count)
                } else {
                    one_client(count)
                }
            }
        };
        for second in 0..20 {
            let now = start + Duration::from_secs(second);
            let reading = flicker(second)(count);
            let decision = policy.decide(
                now,
                Some(reading),
                situation(count, (1, 8), true, true),
                &MARKS,
            );
            assert_eq!(decision, Decision::Hold, "second {second}");
        }
    }

    #[test]
    fn no_step_while_a_step_may_not_be_taken_and_bounds_are_enforced_first() {
        let mut policy = Policy::default();
        let now = Instant::now();
        for second in 0..10 {
            let at = now + Duration::from_secs(second);
            let decision = policy.decide(
                at,
                Some(crowded(1)),
                situation(1, (1, 8), false, true),
                &MARKS,
            );
            assert_eq!(decision, Decision::Hold);
        }
        // Allowed again: the pressure has lasted, so the step comes at once.
        let decision = policy.decide(
            now + Duration::from_secs(10),
            Some(crowded(1)),
            situation(1, (1, 8), true, true),
            &MARKS,
        );
        assert!(
            matches!(decision, Decision::Scale { to: 2, .. }),
            "{decision:?}"
        );
        let decision = policy.decide(now, None, situation(9, (1, 8), false, false), &MARKS);
        assert!(
            matches!(decision, Decision::Scale { to: 8, .. }),
            "{decision:?}"
        );
        let decision = policy.decide(now, None, situation(1, (2, 8), false, false), &MARKS);
        assert!(
            matches!(decision, Decision::Scale { to: 2, .. }),
            "{decision:?}"
        );
    }

    #[test]
    fn reasons_say_why_in_numbers() {
        let mut policy = Policy::default();
        let now = Instant::now();
        let _ = policy.decide(
            now,
            Some(crowded(1)),
            situation(1, (1, 8), true, true),
            &MARKS,
        );
        let decision = policy.decide(
            now + Duration::from_secs(1),
            Some(crowded(1)),
            situation(1, (1, 8), true, true),
            &MARKS,
        );
        let Decision::Scale { reason, .. } = decision else {
            panic!("{decision:?}")
        };
        assert_eq!(
            reason,
            "busy 100% for 2s with 16 clients on 1 worker: 1 -> 2"
        );
    }
}
