//! When to scale: the autoscaler's decisions from one reading a second, without any
//! process or clock of its own, so that they can be tested as plain values.
//!
//! - **Up** when the mean busy share stays above `high` for `up_after` with more
//!   clients than workers (requests wait for each other somewhere). A lone client
//!   sending one request at a time keeps a worker fully busy, but another worker would
//!   not serve it faster. Each step starts twice as many workers as the one before
//!   while the pressure lasts (a reading or so without it, the new workers' first
//!   second, does not end it).
//! - **Down**, one worker per reading, once for `idle_for` either the mean busy share
//!   stayed below `low`, or one worker fewer would have served the same: never was
//!   every worker busy at once, and no worker had two clients at once. One client
//!   hopping from worker to worker (a connection per request) keeps one busy at a
//!   time, however busy; two clients each busy half the time keep two busy now and
//!   then, and on one worker they would wait for each other — going down for them
//!   would flap.

use std::time::{Duration, Instant};

/// What one heartbeat's second says about the workers that count (ready, not
/// draining, with a load reading).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Reading {
    /// Their mean busy share, event-loop lag included, 0 to 1.
    pub(crate) busy: f64,
    /// Clients, summed over the workers (for each, the most work it had in hand at
    /// once, or the connections still open that sent it requests, whichever is more),
    /// plus the connections waiting in the accept queues.
    pub(crate) clients: u64,
    /// Some worker had two clients or more at once.
    pub(crate) contended: bool,
    /// The most of them that had work in hand at once (at most `counted`); `None` when
    /// not known (a worker does not share its work on the board).
    pub(crate) together: Option<usize>,
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

/// The streaks the decisions follow.
#[derive(Debug, Default)]
pub(crate) struct Policy {
    /// Since the first reading of the current stretch of pressure.
    pressed_since: Option<Instant>,
    /// The highest mean busy share of that stretch, for the reason.
    pressed_busy: f64,
    /// Since the first reading without pressure after some (it ends the doubling once
    /// it lasts `up_after`).
    relieved_since: Option<Instant>,
    /// How many workers the next step up starts: doubles while the pressure lasts.
    step: usize,
    /// The current stretch of readings with the mean busy share below `low`, and the
    /// highest share in it (for the reason).
    quiet: Option<(Instant, f64)>,
    /// The current stretch of readings in which one worker fewer would have served the
    /// same (no worker contended, not every worker busy at once).
    spare: Option<Instant>,
    /// For `k` workers busy at once (index `k - 1`), the last reading that had at
    /// least that many: how far the spare stretch may take the count down.
    together_at: Vec<Instant>,
    /// When the last reading came.
    last_reading: Option<Instant>,
}

impl Policy {
    /// Forgets the streaks (after an operator's scale, or a freeze).
    pub(crate) fn reset(&mut self) {
        self.pressed_since = None;
        self.relieved_since = None;
        self.quiet = None;
        self.spare = None;
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
        if let Some(together) = reading.together {
            let together = together.min(reading.counted);
            if self.together_at.len() < together {
                self.together_at.resize(together, now);
            }
            for at in self.together_at.iter_mut().take(together) {
                *at = now;
            }
        }
        if reading.busy > marks.high && reading.clients > reading.counted as u64 {
            self.quiet = None;
            self.spare = None;
            self.relieved_since = None;
            return self.pressed(now, reading, current, max, marks, may_up);
        }
        self.pressed_since = None;
        let relieved = *self.relieved_since.get_or_insert(now);
        if now.saturating_duration_since(relieved) + READING_SPAN >= marks.up_after {
            self.step = 1;
        }
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
        if reading.busy < marks.low {
            let (_, most) = self.quiet.get_or_insert((now, 0.0));
            *most = f64::max(*most, reading.busy);
        } else {
            self.quiet = None;
        }
        let spare = !reading.contended
            && reading
                .together
                .is_some_and(|together| together < reading.counted);
        if spare {
            self.spare.get_or_insert(now);
        } else {
            self.spare = None;
        }
        if !may_down || current <= min {
            return Decision::Hold;
        }
        let to = current - 1;
        let lasted = |since: Instant| now.saturating_duration_since(since) + READING_SPAN;
        if let Some((since, most)) = self
            .quiet
            .filter(|(since, _)| lasted(*since) >= marks.idle_for)
        {
            let reason = format!(
                "busy at most {:.0}% for {}: {current} -> {to}",
                most * 100.0,
                seconds(lasted(since))
            );
            return Decision::Scale { to, reason };
        }
        let Some(since) = self.spare.filter(|since| lasted(*since) >= marks.idle_for) else {
            return Decision::Hold;
        };
        // `to` workers are enough if no reading of the last `idle_for` had more than
        // `to` busy at once.
        let most_together = self
            .together_at
            .iter()
            .rposition(|at| now.saturating_duration_since(*at) < marks.idle_for)
            .map_or(0, |k| k + 1);
        if most_together > to {
            return Decision::Hold;
        }
        let reason = format!(
            "at most {} of {} busy at once and {} at a time per worker for {}: {current} -> {to}",
            most_together,
            workers(current),
            clients(1),
            seconds(lasted(since))
        );
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
    /// workers (spread evenly; their work overlaps now and then).
    fn load(clients: u64, share: f64) -> impl Fn(usize) -> Reading {
        move |count: usize| {
            let total_busy = (clients as f64 * share).min(count as f64);
            Reading {
                busy: total_busy / count as f64,
                clients,
                contended: clients > count as u64,
                together: Some(if share > 0.0 {
                    (clients as usize).min(count)
                } else {
                    0
                }),
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
    fn one_client_after_a_crowd_goes_down_one_worker_per_second_however_noisy_its_share() {
        // 100 slow clients on 4 workers, then a second with fewer of them (quiet, but
        // contended), then one client at a time whose share reads around `low`.
        let (mut policy, mut count, mut start) = (Policy::default(), 4, Instant::now());
        assert_eq!(
            run(
                &mut policy,
                &mut count,
                (1, 4),
                5,
                &mut start,
                load(100, 1.0)
            ),
            vec![]
        );
        let thinning = |count: usize| Reading {
            busy: 0.1,
            clients: 50,
            contended: true,
            together: Some(count),
            counted: count,
        };
        assert_eq!(
            run(&mut policy, &mut count, (1, 4), 1, &mut start, thinning),
            vec![]
        );
        let lone = |count: usize| Reading {
            busy: if count == 4 { 0.32 } else { 1.0 / count as f64 },
            // Each worker it visited in the second had it once.
            clients: count.min(2) as u64,
            contended: false,
            together: Some(1),
            counted: count,
        };
        assert_eq!(
            run(&mut policy, &mut count, (1, 4), 70, &mut start, lone),
            vec![(59, 3), (60, 2), (61, 1)]
        );
    }

    #[test]
    fn two_workers_busy_at_once_now_and_then_keep_the_second_one() {
        let (mut policy, mut count, mut start) = (Policy::default(), 2, Instant::now());
        // Each worker half busy, one client at a time on each, sometimes both at once.
        let reading = |second: u64| {
            move |count: usize| Reading {
                busy: 0.5,
                clients: 2,
                contended: false,
                together: Some(if second % 7 == 0 { 2 } else { 1 }.min(count)),
                counted: count,
            }
        };
        let mut changes = Vec::new();
        for second in 0..600 {
            changes.extend(run(
                &mut policy,
                &mut count,
                (1, 2),
                1,
                &mut start,
                reading(second),
            ));
        }
        assert_eq!(changes, vec![]);
    }

    #[test]
    fn a_new_workers_first_idle_second_does_not_end_the_doubling() {
        let (mut policy, mut count, mut start) = (Policy::default(), 1, Instant::now());
        let mut fresh = None;
        let mut changes = Vec::new();
        for second in 0..12 {
            // The reading right after a step: the new workers have not started yet.
            let crowded = load(100, 1.0);
            let reading = move |count: usize| {
                let mut reading = crowded(count);
                if fresh == Some(second) {
                    reading.busy = 0.5;
                }
                reading
            };
            let step = run(&mut policy, &mut count, (1, 16), 1, &mut start, reading);
            if !step.is_empty() {
                fresh = Some(second + 1);
            }
            changes.extend(step.into_iter().map(|(_, to)| to));
        }
        assert_eq!(changes, vec![2, 4, 8, 16]);
    }

    #[test]
    fn half_busy_workers_with_clients_waiting_stay() {
        let (mut policy, mut count, mut start) = (Policy::default(), 4, Instant::now());
        let half = |count: usize| Reading {
            busy: 0.5,
            clients: 3 * count as u64,
            contended: true,
            together: Some(count),
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
