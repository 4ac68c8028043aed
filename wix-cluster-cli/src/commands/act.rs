//! The actions: `roll`, `scale N|+N|-N`, `upgrade`, `stop`. Each asks the management
//! app (with the admin token), then, unless `--no-wait`, follows what happens (the
//! event log, `GET /`) and prints one line per step until the action has finished
//! (exit 0) or stopped (exit 1, with the reason): a rolling restart's "finished" and
//! every new worker ready; a scale's desired count running and ready; an upgrade's new
//! master answering and ready; a stop's master gone.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::args::{Output, Wait};
use crate::client::Client;
use crate::failure::Failure;

/// How often a waiting action looks at the cluster.
const POLL: Duration = Duration::from_millis(200);
/// How long a waiting action tolerates a cluster that does not answer (an upgrade's
/// handover, a busy master) before giving up with exit 3.
const UNANSWERED: Duration = Duration::from_secs(15);

/// What an action prints as it goes, and at its end.
struct Progress {
    action: &'static str,
    output: Output,
    steps: Vec<String>,
}

impl Progress {
    fn new(action: &'static str, output: Output) -> Progress {
        Progress {
            action,
            output,
            steps: Vec::new(),
        }
    }

    fn step(&mut self, step: String) {
        match self.output {
            Output::Table => crate::print::line(&format!("{}: {step}", self.action)),
            Output::Json => eprintln!("{}: {step}", self.action),
        }
        // Bounded: an action that runs long keeps its last steps.
        if self.steps.len() >= 1000 {
            self.steps.remove(0);
        }
        self.steps.push(step);
    }

    fn done(self, detail: String) -> Result<(), Failure> {
        match self.output {
            Output::Table => crate::print::line(&format!("{}: {detail}", self.action)),
            Output::Json => crate::print::json(&json!({
                "action": self.action, "result": "done", "detail": detail, "steps": self.steps,
            })),
        }
        Ok(())
    }

    fn failed(self, reason: String) -> Result<(), Failure> {
        if self.output == Output::Json {
            crate::print::json(&json!({
                "action": self.action, "result": "failed", "reason": reason, "steps": self.steps,
            }));
        }
        Err(Failure::Failed(format!("{} failed: {reason}", self.action)))
    }
}

/// Reads `GET path`, tolerating a cluster that does not answer for [`UNANSWERED`]:
/// `Ok(None)` meanwhile.
fn patiently(
    client: &Client,
    path: &str,
    unanswered: &mut Option<Instant>,
) -> Result<Option<Value>, Failure> {
    match client.get(path) {
        Ok(value) => {
            *unanswered = None;
            Ok(Some(value))
        }
        Err(Failure::Unreachable(why)) => {
            let since = *unanswered.get_or_insert_with(Instant::now);
            if since.elapsed() > UNANSWERED {
                Err(Failure::Unreachable(why))
            } else {
                Ok(None)
            }
        }
        Err(other) => Err(other),
    }
}

/// The log's entries after `cursor`, oldest first; moves `cursor` on.
fn new_events(log: &Value, cursor: &mut u64) -> Vec<Value> {
    let mut events: Vec<Value> = log["events"].as_array().cloned().unwrap_or_default();
    events.reverse();
    events.retain(|e| e["seq"].as_u64().is_some_and(|seq| seq > *cursor));
    if let Some(seq) = events.last().and_then(|e| e["seq"].as_u64()) {
        *cursor = seq;
    }
    events
}

/// `(k, n)` from a step's `(k/n)`.
fn fraction(cause: &str) -> Option<(usize, usize)> {
    let open = cause.rfind('(')?;
    let inner = cause[open + 1..].split(')').next()?;
    let (k, n) = inner.split_once('/')?;
    Some((k.trim().parse().ok()?, n.trim().parse().ok()?))
}

/// `[##--]`: `k` of `n` done.
fn bar(k: usize, n: usize) -> String {
    let n = n.clamp(1, 64);
    let k = k.min(n);
    format!("[{}{}]", "#".repeat(k), "-".repeat(n - k))
}

/// `roll`: a rolling restart.
pub(crate) fn roll(client: &Client, wait: &Wait, output: Output) -> Result<(), Failure> {
    let mut cursor = client.get("/events")?["latest"].as_u64().unwrap_or(0);
    client.post("/workers/restart")?;
    let mut progress = Progress::new("roll", output);
    if wait.no_wait {
        return progress.done("rolling restart started".into());
    }
    let deadline = Instant::now() + wait.timeout;
    let mut unanswered = None;
    let mut finished = None;
    loop {
        if let Some(log) = patiently(client, &format!("/events?since={cursor}"), &mut unanswered)? {
            for event in new_events(&log, &mut cursor) {
                let cause = event["cause"].as_str().unwrap_or("").to_owned();
                match event["kind"].as_str() {
                    Some("roll") => {
                        if cause.starts_with("rolling restart stopped") {
                            progress.step(cause.clone());
                            return progress.failed(cause);
                        }
                        let step = match fraction(&cause) {
                            Some((k, n)) => format!("{} {cause}", bar(k, n)),
                            None => cause.clone(),
                        };
                        progress.step(step);
                        if cause.starts_with("rolling restart finished") {
                            finished = Some(cause);
                        }
                    }
                    Some(kind @ ("fork" | "listening" | "spawn_failed" | "exit")) => {
                        let w = &event["worker"];
                        progress.step(format!(
                            "  worker {} pid {}: {kind}{}",
                            w["id"],
                            w["pid"],
                            if kind == "fork" {
                                String::new()
                            } else {
                                format!(" ({cause})")
                            }
                        ));
                    }
                    _ => {}
                }
            }
        }
        if let Some(cause) = &finished {
            if let Some(ready) = patiently(client, "/health/ready", &mut unanswered)? {
                if ready["status"] != "stopping"
                    && ready["ready"].as_u64() >= ready["desired"].as_u64()
                {
                    return progress.done(format!("{cause}; every worker ready"));
                }
            }
        }
        if Instant::now() > deadline {
            return progress.failed(format!(
                "not finished within {:?} (the cluster goes on with it)",
                wait.timeout
            ));
        }
        std::thread::sleep(POLL);
    }
}

/// The count `scale` asks for: `N`, or the desired count plus or minus `N`.
pub(crate) fn target(count: &str, desired: u64) -> Result<u64, Failure> {
    let bad = || {
        Failure::Usage(format!(
            "expected N, +N or -N (a whole number), got {count:?}"
        ))
    };
    let count = count.trim();
    let target = if let Some(more) = count.strip_prefix('+') {
        desired.saturating_add(more.parse().map_err(|_| bad())?)
    } else if let Some(fewer) = count.strip_prefix('-') {
        let fewer: u64 = fewer.parse().map_err(|_| bad())?;
        desired.saturating_sub(fewer)
    } else {
        count.parse().map_err(|_| bad())?
    };
    if !(1..=1024).contains(&target) {
        return Err(Failure::Usage(format!(
            "a cluster runs 1 to 1024 workers, not {target}"
        )));
    }
    Ok(target)
}

/// `scale N|+N|-N`.
pub(crate) fn scale(
    client: &Client,
    count: &str,
    wait: &Wait,
    output: Output,
) -> Result<(), Failure> {
    let info = client.get("/")?;
    let desired = info["workers"]["desired"].as_u64().unwrap_or(0);
    let target = target(count, desired)?;
    client.post(&format!("/workers/scale?count={target}"))?;
    let mut progress = Progress::new("scale", output);
    if wait.no_wait {
        return progress.done(format!("scaling from {desired} to {target} workers"));
    }
    progress.step(format!("from {desired} to {target} workers"));
    let deadline = Instant::now() + wait.timeout;
    let mut unanswered = None;
    let mut last = None;
    let mut spawn_error: Option<String> = None;
    loop {
        if let Some(info) = patiently(client, "/", &mut unanswered)? {
            let w = &info["workers"];
            let now = (
                w["running"].as_u64(),
                w["ready"].as_u64(),
                w["desired"].as_u64(),
            );
            if last != Some(now) {
                progress.step(format!(
                    "{} running, {} ready of {}",
                    now.0.unwrap_or(0),
                    now.1.unwrap_or(0),
                    now.2.unwrap_or(0)
                ));
                last = Some(now);
            }
            if now == (Some(target), Some(target), Some(target)) {
                return progress.done(format!("{target} workers running and ready"));
            }
            if info["failing"] == true {
                let why = spawn_error.unwrap_or_else(|| "workers keep dying".into());
                return progress.failed(format!("the cluster is failing (cyclic death): {why}"));
            }
        }
        if let Some(ready) = patiently(client, "/health/ready", &mut unanswered)? {
            if let Some(error) = ready["spawn_error"].as_str() {
                if spawn_error.as_deref() != Some(error) {
                    progress.step(format!("cannot start a worker: {error}"));
                    spawn_error = Some(error.to_owned());
                }
            }
        }
        if Instant::now() > deadline {
            let why = spawn_error.map_or_else(String::new, |e| format!(": {e}"));
            return progress.failed(format!("not done within {:?}{why}", wait.timeout));
        }
        std::thread::sleep(POLL);
    }
}

/// `upgrade`: a new master takes over.
pub(crate) fn upgrade(client: &Client, wait: &Wait, output: Output) -> Result<(), Failure> {
    let info = client.get("/")?;
    let old = info["pid"].as_u64().unwrap_or(0);
    let mut cursor = client.get("/events")?["latest"].as_u64().unwrap_or(0);
    client.post("/master/upgrade")?;
    let mut progress = Progress::new("upgrade", output);
    if wait.no_wait {
        return progress.done(format!("upgrade of the master (pid {old}) started"));
    }
    let deadline = Instant::now() + wait.timeout;
    let mut unanswered = None;
    loop {
        if let Some(info) = patiently(client, "/", &mut unanswered)? {
            let pid = info["pid"].as_u64().unwrap_or(0);
            if pid != old && pid != 0 {
                if let Some(ready) = patiently(client, "/health/ready", &mut unanswered)? {
                    if ready["ready"].as_u64() >= ready["desired"].as_u64() {
                        return progress.done(format!(
                            "the new master (pid {pid}) serves, {} workers ready",
                            ready["ready"]
                        ));
                    }
                }
            } else if let Some(log) =
                patiently(client, &format!("/events?since={cursor}"), &mut unanswered)?
            {
                for event in new_events(&log, &mut cursor) {
                    if event["kind"] != "upgrade" {
                        continue;
                    }
                    let cause = event["cause"].as_str().unwrap_or("").to_owned();
                    progress.step(cause.clone());
                    if cause.starts_with("upgrade failed") {
                        return progress.failed(cause);
                    }
                }
            }
        }
        if Instant::now() > deadline {
            return progress.failed(format!("no new master within {:?}", wait.timeout));
        }
        std::thread::sleep(POLL);
    }
}

/// Whether process `pid` of this machine still runs (not a zombie).
fn alive(pid: u64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X")
    })
}

/// `stop`: the cluster stops gracefully.
pub(crate) fn stop(client: &Client, wait: &Wait, output: Output) -> Result<(), Failure> {
    let answer = client.post("/master/stop")?;
    let pid = answer["pid"].as_u64().unwrap_or(0);
    let mut progress = Progress::new("stop", output);
    if wait.no_wait {
        return progress.done(format!("the master (pid {pid}) is stopping"));
    }
    let deadline = Instant::now() + wait.timeout;
    let local = client.addr.ip().is_loopback();
    let mut last = None;
    loop {
        match client.get("/") {
            Ok(info) => {
                let running = info["workers"]["running"].as_u64();
                if last != Some(running) {
                    progress.step(format!("{} workers left", running.unwrap_or(0)));
                    last = Some(running);
                }
            }
            Err(Failure::Unreachable(_)) if !local || !alive(pid) => {
                return progress.done(format!("the master (pid {pid}) has exited"));
            }
            Err(Failure::Unreachable(_)) => {}
            Err(other) => return Err(other),
        }
        if Instant::now() > deadline {
            return progress.failed(format!("still running after {:?}", wait.timeout));
        }
        std::thread::sleep(POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_targets_are_absolute_or_relative_and_bounded() {
        assert_eq!(target("4", 2).ok(), Some(4));
        assert_eq!(target("+2", 2).ok(), Some(4));
        assert_eq!(target("-1", 2).ok(), Some(1));
        assert!(matches!(target("-2", 2), Err(Failure::Usage(_))));
        assert!(matches!(target("0", 2), Err(Failure::Usage(_))));
        assert!(matches!(target("many", 2), Err(Failure::Usage(_))));
        assert!(matches!(target("2000", 2), Err(Failure::Usage(_))));
    }

    #[test]
    fn roll_steps_give_their_fraction() {
        assert_eq!(
            fraction("worker 1 (pid 4321) replaced by pid 4400, ready; the old one drains (1/2)"),
            Some((1, 2))
        );
        assert_eq!(fraction("rolling restart started (2 workers)"), None);
        assert_eq!(bar(1, 3), "[#--]");
    }
}
