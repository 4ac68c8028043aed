//! `Stall`: guards against stalled and runaway workers — a late heartbeat, CPU pegged
//! for too long, too much memory, too many requests.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use crate::{Master, Plugin, PluginError, Worker, WorkerInfo, WorkerRef, WorkerState};

/// Guards every worker:
///
/// - **heartbeat** (always on): a worker's runtime sends a heartbeat every second from a
///   task that only runs when its event loop is free. A worker silent for longer than
///   `timeout` (default 30 s, gunicorn's) is stalled: logged with its pid and how long
///   it was silent, sent SIGABRT (a core or backtrace where enabled), then SIGKILL 2 s
///   later; `Respawn` replaces it. Nothing touches the disk.
/// - **CPU** (off unless `cpu_percent` is set): a worker above `cpu_percent` of one core
///   for `cpu_for` (default 60 s) is recycled: its successor starts, then it drains.
/// - **memory** (off unless `max_rss` is set, in bytes): a worker whose resident memory
///   is above `max_rss` is recycled. Checked every second.
/// - **requests** (off unless `max_requests` is set): a worker asks to be recycled after
///   serving `max_requests` plus a random `0..=max_requests_jitter` requests through
///   [`crate::http::serve`], so that workers do not all recycle together.
///
/// Every kill or recycle is a `stalled` or `recycled` lifecycle event with its reason.
#[derive(Debug, Clone)]
pub struct Stall {
    timeout: Duration,
    cpu_percent: Option<u32>,
    cpu_for: Duration,
    max_rss: Option<u64>,
    max_requests: Option<u64>,
    max_requests_jitter: u64,
}

impl Default for Stall {
    fn default() -> Self {
        Stall {
            timeout: Duration::from_secs(30),
            cpu_percent: None,
            cpu_for: Duration::from_secs(60),
            max_rss: None,
            max_requests: None,
            max_requests_jitter: 0,
        }
    }
}

/// How often the master checks.
const CHECK_EVERY: Duration = Duration::from_secs(1);

impl Stall {
    /// A worker silent for longer than this is stalled. Default 30 s.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Turns the CPU guard on: recycle a worker above this percentage of one core for
    /// [`Stall::cpu_for`].
    pub fn cpu_percent(mut self, percent: u32) -> Self {
        self.cpu_percent = Some(percent);
        self
    }

    /// How long the CPU must stay above [`Stall::cpu_percent`]. Default 60 s.
    pub fn cpu_for(mut self, duration: Duration) -> Self {
        self.cpu_for = duration;
        self
    }

    /// Turns the memory guard on: recycle a worker whose RSS exceeds this many bytes.
    pub fn max_rss(mut self, bytes: u64) -> Self {
        self.max_rss = Some(bytes);
        self
    }

    /// Turns the request guard on: recycle a worker after this many requests.
    pub fn max_requests(mut self, requests: u64) -> Self {
        self.max_requests = Some(requests);
        self
    }

    /// Adds a random `0..=jitter` to [`Stall::max_requests`] per worker. Default 0.
    pub fn max_requests_jitter(mut self, jitter: u64) -> Self {
        self.max_requests_jitter = jitter;
        self
    }

    fn validate(&self) -> Result<(), String> {
        if self.timeout.is_zero() {
            return Err("Stall: timeout must be more than 0".into());
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        if let Some(percent) = self.cpu_percent {
            if percent == 0 || percent as usize > 100 * cores {
                return Err(format!(
                    "Stall: cpu_percent must be between 1 and {} (100 per core), not {percent}",
                    100 * cores
                ));
            }
            if self.cpu_for.is_zero() {
                return Err("Stall: cpu_for must be more than 0".into());
            }
        }
        if self.max_rss == Some(0) {
            return Err("Stall: max_rss must be more than 0 bytes".into());
        }
        if self.max_requests == Some(0) {
            return Err("Stall: max_requests must be at least 1".into());
        }
        Ok(())
    }
}

impl Plugin for Stall {
    fn name(&self) -> &str {
        "Stall"
    }

    async fn on_master(&self, master: &Master) -> Result<(), PluginError> {
        self.validate()?;
        let guard = Guard {
            config: self.clone(),
            master: master.clone(),
            cpu: HashMap::new(),
            acted: HashSet::new(),
        };
        tokio::spawn(guard.run());
        Ok(())
    }

    async fn on_worker(&self, worker: &Worker) -> Result<(), PluginError> {
        if let Some(max) = self.max_requests {
            let jitter = match self.max_requests_jitter {
                0 => 0,
                // `0..=jitter`, for any jitter (u64::MAX included).
                jitter => jitter
                    .checked_add(1)
                    .map_or(pseudo_random(worker), |span| pseudo_random(worker) % span),
            };
            worker.set_max_requests(max.saturating_add(jitter));
        }
        Ok(())
    }
}

/// Different per worker process, which is all the jitter needs.
fn pseudo_random(worker: &Worker) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(worker.pid());
    hasher.finish()
}

/// The master-side checks.
struct Guard {
    config: Stall,
    master: Master,
    cpu: HashMap<WorkerRef, CpuTrack>,
    /// Workers already aborted or recycled (they are on their way out).
    acted: HashSet<WorkerRef>,
}

struct CpuTrack {
    cpu_time: Duration,
    at: Instant,
    above_since: Option<Instant>,
}

impl Guard {
    async fn run(mut self) {
        let mut ticks = tokio::time::interval(CHECK_EVERY);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let workers = self.master.workers().await;
            let live: HashSet<WorkerRef> = workers.iter().map(|w| w.worker).collect();
            self.cpu.retain(|worker, _| live.contains(worker));
            self.acted.retain(|worker| live.contains(worker));
            for info in workers {
                if info.state != WorkerState::Draining && !self.acted.contains(&info.worker) {
                    self.check(&info, Instant::now());
                }
            }
        }
    }

    fn check(&mut self, info: &WorkerInfo, now: Instant) {
        let worker = info.worker;
        if info.since_heartbeat > self.config.timeout {
            self.acted.insert(worker);
            let reason = format!(
                "no heartbeat from pid {} for {:.1}s (timeout {:?})",
                worker.pid,
                info.since_heartbeat.as_secs_f64(),
                self.config.timeout
            );
            self.master.abort(worker, reason);
            return;
        }
        if self.config.cpu_percent.is_none() && self.config.max_rss.is_none() {
            return;
        }
        let Ok(stat) = crate::procfs::stat(worker.pid) else {
            return;
        };
        if let Some(max) = self.config.max_rss {
            if stat.rss_bytes > max {
                self.acted.insert(worker);
                let reason = format!("RSS {} bytes is above max_rss {max} bytes", stat.rss_bytes);
                self.master.recycle(worker, reason);
                return;
            }
        }
        if let Some(limit) = self.config.cpu_percent {
            if let Some(over) = self.cpu_over_limit(worker, stat.cpu_time, now, limit) {
                self.acted.insert(worker);
                let reason = format!("CPU above {limit}% for {:.1}s", over.as_secs_f64());
                self.master.recycle(worker, reason);
            }
        }
    }

    /// Records a CPU reading; returns how long the worker has been above `limit` once
    /// that reaches `cpu_for`.
    fn cpu_over_limit(
        &mut self,
        worker: WorkerRef,
        cpu_time: Duration,
        now: Instant,
        limit: u32,
    ) -> Option<Duration> {
        let Some(track) = self.cpu.get_mut(&worker) else {
            self.cpu.insert(
                worker,
                CpuTrack {
                    cpu_time,
                    at: now,
                    above_since: None,
                },
            );
            return None;
        };
        let wall = now.saturating_duration_since(track.at);
        if wall.is_zero() {
            return None;
        }
        let percent =
            cpu_time.saturating_sub(track.cpu_time).as_secs_f64() / wall.as_secs_f64() * 100.0;
        let since = if percent > f64::from(limit) {
            *track.above_since.get_or_insert(track.at)
        } else {
            track.above_since = None;
            now
        };
        track.cpu_time = cpu_time;
        track.at = now;
        let over = now.saturating_duration_since(since);
        (track.above_since.is_some() && over >= self.config.cpu_for).then_some(over)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid_and_leave_the_optional_guards_off() {
        let stall = Stall::default();
        assert_eq!(stall.validate(), Ok(()));
        assert_eq!(stall.timeout, Duration::from_secs(30));
        assert!(
            stall.cpu_percent.is_none() && stall.max_rss.is_none() && stall.max_requests.is_none()
        );
    }

    #[test]
    fn bad_builder_values_are_clear_errors() {
        let cases = [
            (
                Stall::default().timeout(Duration::ZERO),
                "timeout must be more than 0",
            ),
            (
                Stall::default().cpu_percent(0),
                "cpu_percent must be between 1 and",
            ),
            (Stall::default().cpu_percent(100_000), "not 100000"),
            (
                Stall::default().cpu_percent(50).cpu_for(Duration::ZERO),
                "cpu_for must be more than 0",
            ),
            (Stall::default().max_rss(0), "max_rss must be more than 0"),
            (
                Stall::default().max_requests(0),
                "max_requests must be at least 1",
            ),
        ];
        for (stall, expected) in cases {
            let error = stall.validate().unwrap_err();
            assert!(
                error.contains(expected),
                "{error:?} should say {expected:?}"
            );
        }
    }
}
