//! When to scale: the autoscaler's decisions from one reading a second, without any
//! process or clock of its own, so that they can be tested as plain values.
//!
//! - **Up** when the mean busy share stays above `high` for `up_after` with more
//!   clients than workers (requests wait for each other somewhere). A lone client
//!   sending one request at a time keeps a worker fully busy, but another worker would
//!   not serve it faster.
//! - **Down** when for `idle_for` the mean busy share stays below `low`, or no worker
//!   had two clients at once and their busy time (on average over that stretch) fits
//!   on one worker fewer. The second rule does not take the cluster back to a count it
//!   left under pressure (in the last [`REMEMBER_IDLE_FORS`] `idle_for`s) unless the
//!   work has fallen below `high` of what the workers had in hand after that step: two
//!   clients each busy half the time fit on one worker by their busy time, but on one
//!   worker they wait for each other, which is why it was left — going back would
//!   flap. Sixteen clients that became one are another matter.

use std::time::{Duration, Instant};

/// What one heartbeat's second says about the workers that count (ready, not
/// draining, with a load reading).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Reading {
    /// Their mean busy share, event-loop lag included, 0 to 1.
    pub(crate) busy: f64,
    /// Their busy shares summed, lag left out: the workers' worth of work in hand.
    pub(crate) total_busy: f64,
    /// Clients, summed over the workers (for each, the most work it had in hand at
    /// once, or the connections still open that sent it requests, whichever is more),
    /// plus the connections waiting in the accept queues.
    pub(crate) clients: u64,
    /// Some worker had two clients or more at once.
    pub(crate) contended: bool,
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
/// The longest gap between two readings of one streak.
const MAX_GAP: Duration = Duration::from_millis(2500);
/// How many `idle_for`s a step up is remembered.
pub(crate) const REMEMBER_IDLE_FORS: u32 = 10;
/// The most steps up remembered.
const MAX_REMEMBERED: usize = 64;
/// What the busy time may exceed the workers it is to fit on by (measurement noise:
/// the workers' seconds do not start together).
const FIT_SLACK: f64 = 0.05;

/// A step up: from how many workers to how many, when, and the most work in hand
/// (in workers' worth) seen at its count since.
#[derive(Debug, Clone, Copy)]
struct Step {
    from: usize,
    to: usize,
    at: Instant,
    busy_after: f64,
}

/// The streaks the decisions follow.
#[derive(Debug, Default)]
pub(crate) struct Policy {
    /// Since the first reading of the current stretch of pressure.
    pressed_since: Option<Instant>,
    /// The highest mean busy share of that stretch, for the reason.
    pressed_busy: f64,
    /// The current idle stretch.
    idle: Option<Idle>,
    /// How many workers the next step up starts: doubles while the pressure lasts.
    step: usize,
    /// The steps up taken lately.
    ups: Vec<Step>,
    /// When the last reading came.
    last_reading: Option<Instant>,
}

/// A stretch of readings that allow a step down.
#[derive(Debug, Clone, Copy)]
struct Idle {
    since: Instant,
    /// Every reading had a mean busy share below `low`.
    quiet: bool,
    /// No reading was contended.
    uncontended: bool,
    /// The highest mean busy share, for the reason.
    most_busy: f64,
    /// For the mean busy time.
    total_busy_sum: f64,
    readings: u32,
}

impl Policy {
    /// Forgets the streaks (after an operator's scale, or a freeze); what it remembers
    /// of past steps up stays.
    pub(crate) fn reset(&mut self) {
        self.pressed_since = None;
        self.idle = None;
        self.step = 1;
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
        // A streak is of readings one after the other: after a gap (no worker could be
        // read, a roll), it starts again.
        if self
            .last_reading
            .is_some_and(|last| now.saturating_duration_since(last) > MAX_GAP)
        {
            self.reset();
        }
        self.last_reading = Some(now);
        let remember = marks.idle_for.saturating_mul(REMEMBER_IDLE_FORS);
        self.ups
            .retain(|step| now.saturating_duration_since(step.at) < remember);
        for step in self.ups.iter_mut().filter(|step| step.to == current) {
            step.busy_after = step.busy_after.max(reading.total_busy);
        }
        if reading.busy > marks.high && reading.clients > reading.counted as u64 {
            self.idle = None;
            return self.pressed(now, reading, current, max, marks, may_up);
        }
        self.pressed_since = None;
        self.step = 1;
        self.idling(now, reading, current, min, marks, may_down)
    }

    fn pressed(
        &mut self,
        now: Instant,
        reading: Reading,
        current: usize,
        max: usize,
        marks: &Marks,
        may_up: bool,
    ) -> Decision {
        let since = *self.pressed_since.get_or_insert(now);
        if since == now {
            self.pressed_busy = 0.0;
        }
        self.pressed_busy = self.pressed_busy.max(reading.busy);
        let lasted = now.saturating_duration_since(since) + READING_SPAN;
        if lasted < marks.up_after || !may_up || current >= max {
            return Decision::Hold;
        }
        let step = self.step.max(1);
        let to = (current + step).min(max);
        self.step = (step * 2).min(MAX_STEP);
        if self.ups.len() >= MAX_REMEMBERED {
            self.ups.remove(0);
        }
        self.ups.push(Step {
            from: current,
            to,
            at: now,
            busy_after: 0.0,
        });
        let reason = format!(
            "busy {:.0}% for {} with {} on {}: {current} -> {to}",
            self.pressed_busy * 100.0,
            seconds(lasted),
            clients(reading.clients),
            workers(reading.counted)
        );
        // The next step needs the pressure to last again, on more workers.
        self.pressed_since = None;
        Decision::Scale { to, reason }
    }

    fn idling(
        &mut self,
        now: Instant,
        reading: Reading,
        current: usize,
        min: usize,
        marks: &Marks,
        may_down: bool,
    ) -> Decision {
        let quiet = reading.busy < marks.low;
        if !quiet && reading.contended {
            self.idle = None;
            return Decision::Hold;
        }
        let idle = self.idle.get_or_insert(Idle {
            since: now,
            quiet: true,
            uncontended: true,
            most_busy: 0.0,
            total_busy_sum: 0.0,
            readings: 0,
        });
        idle.quiet &= quiet;
        idle.uncontended &= !reading.contended;
        idle.most_busy = idle.most_busy.max(reading.busy);
        idle.total_busy_sum += reading.total_busy;
        idle.readings += 1;
        let idle = *idle;
        let lasted = now.saturating_duration_since(idle.since) + READING_SPAN;
        if lasted < marks.idle_for || !may_down || current <= min {
            return Decision::Hold;
        }
        let to = current - 1;
        let reason = if idle.quiet {
            format!(
                "busy at most {:.0}% for {}: {current} -> {to}",
                idle.most_busy * 100.0,
                seconds(lasted)
            )
        } else {
            let mean_busy = idle.total_busy_sum / f64::from(idle.readings.max(1));
            let fits = idle.uncontended && mean_busy <= to as f64 + FIT_SLACK;
            // Left under pressure, and the work has not fallen much since: going back
            // would flap.
            let left = self
                .ups
                .iter()
                .any(|step| step.from == to && mean_busy > marks.high * step.busy_after);
            if !fits || left {
                return Decision::Hold;
            }
            format!(
                "at most {} at a time per worker and {:.2} workers' worth of busy time for {}: \
                 {current} -> {to}",
                clients(1),
                mean_busy,
                seconds(lasted)
            )
        };
        Decision::Scale { to, reason }
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
            let situation = situation(*count, bounds, true, true);
            if let Decision::Scale { to, .. } =
                policy.decide(now, Some(reading(*count)), situation, &MARKS)
            {
                *count = to;
                changes.push((second, to));
            }
        }
        *start += Duration::from_secs(seconds);
        changes
    }

    /// `clients` clients of CPU-bound work, each busy `share` of the time, on `count`
    /// workers (spread evenly, requests over connections that stay open).
    fn load(clients: u64, share: f64) -> impl Fn(usize) -> Reading {
        move |count: usize| {
            let total_busy = (clients as f64 * share).min(count as f64);
            Reading {
                busy: total_busy / count as f64,
                total_busy,
                clients,
                contended: clients > count as u64,
                counted: count,
            }
        }
    }

    #[test]
    fn pressure_for_two_seconds_steps_up_by_doubling_to_the_maximum() {
        let (mut policy, mut count, mut start) = (Policy::default(), 1, Instant::now());
        let changes = run(
            &mut policy,
            &mut count,
            (1, 8),
            10,
            &mut start,
            load(16, 1.0),
        );
        // 1 + 1, then + 2, then + 4 (capped at 8): one step per two seconds of pressure.
        assert_eq!(changes, vec![(1, 2), (3, 4), (5, 8)]);
    }

    #[test]
    fn one_client_never_scales_up_and_once_alone_again_the_cluster_goes_back_down() {
        let (mut policy, mut count, mut start) = (Policy::default(), 1, Instant::now());
        let one = load(1, 0.99);
        assert_eq!(
            run(&mut policy, &mut count, (1, 2), 120, &mut start, &one),
            vec![]
        );
        // 16 clients: up to 2; back to one client: down after 60 s.
        assert_eq!(
            run(
                &mut policy,
                &mut count,
                (1, 2),
                10,
                &mut start,
                load(16, 1.0)
            ),
            vec![(1, 2)]
        );
        assert_eq!(
            run(&mut policy, &mut count, (1, 2), 70, &mut start, &one),
            vec![(59, 1)]
        );
    }

    #[test]
    fn an_idle_cluster_goes_down_one_worker_per_second() {
        let (mut policy, mut count, mut start) = (Policy::default(), 4, Instant::now());
        let changes = run(
            &mut policy,
            &mut count,
            (1, 4),
            70,
            &mut start,
            load(0, 0.0),
        );
        assert_eq!(changes, vec![(59, 3), (60, 2), (61, 1)]);
    }

    #[test]
    fn a_steady_load_that_needed_a_second_worker_does_not_flap_back() {
        // Two clients each busy half the time: on one worker they wait for each other.
        let (mut policy, mut count, mut start) = (Policy::default(), 1, Instant::now());
        let changes = run(
            &mut policy,
            &mut count,
            (1, 2),
            600,
            &mut start,
            load(2, 0.5),
        );
        assert_eq!(changes, vec![(1, 2)]);
    }

    #[test]
    fn half_busy_workers_with_clients_waiting_stay() {
        let (mut policy, mut count, mut start) = (Policy::default(), 4, Instant::now());
        let half = |count: usize| Reading {
            busy: 0.5,
            total_busy: 0.5 * count as f64,
            clients: 3 * count as u64,
            contended: true,
            counted: count,
        };
        assert_eq!(
            run(&mut policy, &mut count, (1, 8), 300, &mut start, half),
            vec![]
        );
    }

    #[test]
    fn a_break_in_the_pressure_starts_the_wait_again() {
        let (mut policy, start) = (Policy::default(), Instant::now());
        for second in 0..20 {
            let now = start + Duration::from_secs(second);
            let reading = if second % 2 == 0 {
                load(16, 1.0)(1)
            } else {
                load(1, 0.99)(1)
            };
            let decision =
                policy.decide(now, Some(reading), situation(1, (1, 8), true, true), &MARKS);
            assert_eq!(decision, Decision::Hold, "second {second}");
        }
    }

    #[test]
    fn no_step_while_a_step_may_not_be_taken_and_bounds_are_enforced_first() {
        let mut policy = Policy::default();
        let now = Instant::now();
        let crowded = load(16, 1.0);
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
        let at = now + Duration::from_secs(10);
        let decision = policy.decide(
            at,
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
    fn a_gap_in_the_readings_starts_the_streak_again() {
        let mut policy = Policy::default();
        let now = Instant::now();
        let crowded = load(16, 1.0);
        let s = situation(1, (1, 8), true, true);
        assert_eq!(
            policy.decide(now, Some(crowded(1)), s, &MARKS),
            Decision::Hold
        );
        assert_eq!(policy.decide(now, None, s, &MARKS), Decision::Hold);
        let later = now + Duration::from_secs(20);
        assert_eq!(
            policy.decide(later, Some(crowded(1)), s, &MARKS),
            Decision::Hold
        );
        let next = later + Duration::from_secs(1);
        let decision = policy.decide(next, Some(crowded(1)), s, &MARKS);
        assert!(
            matches!(decision, Decision::Scale { to: 2, .. }),
            "{decision:?}"
        );
    }

    #[test]
    fn reasons_say_why_in_numbers() {
        let mut policy = Policy::default();
        let now = Instant::now();
        let crowded = load(16, 1.0);
        let _ = policy.decide(
            now,
            Some(crowded(1)),
            situation(1, (1, 8), true, true),
            &MARKS,
        );
        let at = now + Duration::from_secs(1);
        let decision = policy.decide(
            at,
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
