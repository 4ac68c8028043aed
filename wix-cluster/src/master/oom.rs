//! The cgroup's OOM kills: where `/proc/self/cgroup` leads to a cgroup v2 folder with a
//! `memory.events` file (or a v1 memory controller's `memory.oom_control`), its
//! `oom_kill` count, read at each worker exit to tell whether the kernel's OOM killer
//! struck. Missing files are no error: the exit's cause simply says nothing about it.
//!
//! The count says how many, not whom: kills seen within [`WINDOW`] of each other are one
//! spell, and each worker killed by SIGKILL in it (as many as the kills, in the order
//! the exits are handled) is told it may be one of them; so two workers OOM-killed at
//! once both hear it, rather than the first handled taking both kills.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long after an OOM kill seen an exit may still be one of its victims.
const WINDOW: Duration = Duration::from_secs(2);

/// The cgroup v2 mount point.
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// The master's cgroup's `memory.events`, and the `oom_kill` count last read from it.
pub(crate) struct OomWatch {
    events: Option<PathBuf>,
    last: Option<u64>,
    spell: Option<Spell>,
}

/// OOM kills seen close together, and how many exits were told about them.
struct Spell {
    kills: u64,
    told: u64,
    /// When the last of its kills was seen.
    seen: Instant,
}

impl OomWatch {
    /// Finds this process's cgroup and reads its count once (the baseline).
    pub(crate) fn new() -> OomWatch {
        let events = crate::procfs::cgroups().and_then(|text| {
            let root = Path::new(CGROUP_ROOT);
            [
                memory_events_path(&text, root),
                oom_control_path(&text, root),
            ]
            .into_iter()
            .flatten()
            .find(|path| path.is_file())
        });
        if let Some(path) = &events {
            tracing::debug!("OOM kills are counted in {}", path.display());
        }
        let mut watch = OomWatch {
            events,
            last: None,
            spell: None,
        };
        watch.last = watch.read();
        watch
    }

    fn read(&self) -> Option<u64> {
        let text = std::fs::read_to_string(self.events.as_ref()?).ok()?;
        oom_kills(&text)
    }

    /// For a worker's exit (`sigkill`: it was killed by a SIGKILL the master did not
    /// send): how many processes of the cgroup the OOM killer killed in the spell this
    /// exit may belong to (`None` for none, when the count cannot be read, or when the
    /// spell's victims were all told already).
    pub(crate) fn kills_for_exit(&mut self, sigkill: bool) -> Option<u64> {
        let count = self.read();
        self.note(count, sigkill, Instant::now())
    }

    fn note(&mut self, count: Option<u64>, sigkill: bool, now: Instant) -> Option<u64> {
        if let Some(count) = count {
            let grew = self.last.map_or(0, |last| count.saturating_sub(last));
            self.last = Some(count);
            if grew > 0 {
                match &mut self.spell {
                    Some(spell) if now.duration_since(spell.seen) < WINDOW => {
                        spell.kills += grew;
                        spell.seen = now;
                    }
                    _ => {
                        self.spell = Some(Spell {
                            kills: grew,
                            told: 0,
                            seen: now,
                        });
                    }
                }
            }
        }
        let spell = self.spell.as_mut()?;
        if now.duration_since(spell.seen) >= WINDOW {
            self.spell = None;
            return None;
        }
        if !sigkill || spell.told >= spell.kills {
            return None;
        }
        spell.told += 1;
        Some(spell.kills)
    }
}

/// The cgroup v2 entry (`0::/path`) of a `/proc/<pid>/cgroup` text, as the path of its
/// `memory.events` under `root`.
fn memory_events_path(proc_cgroup: &str, root: &Path) -> Option<PathBuf> {
    let path = proc_cgroup
        .lines()
        .find_map(|line| line.strip_prefix("0::"))?
        .trim()
        .trim_start_matches('/');
    if path.split('/').any(|part| part == "..") {
        return None;
    }
    Some(root.join(path).join("memory.events"))
}

/// The cgroup v1 memory controller's entry (`N:memory:/path`, or a list of
/// controllers naming `memory`) as the path of its `memory.oom_control` under `root`.
fn oom_control_path(proc_cgroup: &str, root: &Path) -> Option<PathBuf> {
    let path = proc_cgroup.lines().find_map(|line| {
        let mut fields = line.splitn(3, ':');
        let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
        controllers
            .split(',')
            .any(|c| c == "memory")
            .then_some(path)
    })?;
    let path = path.trim().trim_start_matches('/');
    if path.split('/').any(|part| part == "..") {
        return None;
    }
    Some(root.join("memory").join(path).join("memory.oom_control"))
}

/// The `oom_kill` count of a `memory.events` (or `memory.oom_control`) text.
fn oom_kills(memory_events: &str) -> Option<u64> {
    memory_events.lines().find_map(|line| {
        let (key, value) = line.split_once(' ')?;
        (key == "oom_kill").then(|| value.trim().parse().ok())?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_v2_entry_leads_to_memory_events() {
        let text = "12:cpu:/old\n0::/system.slice/app.service\n";
        assert_eq!(
            memory_events_path(text, Path::new("/sys/fs/cgroup")),
            Some(PathBuf::from(
                "/sys/fs/cgroup/system.slice/app.service/memory.events"
            ))
        );
        assert_eq!(memory_events_path("3:memory:/x\n", Path::new("/c")), None);
        assert_eq!(memory_events_path("0::/../etc\n", Path::new("/c")), None);
    }

    #[test]
    fn the_v1_memory_entry_leads_to_oom_control() {
        let text = "5:freezer:/\n4:memory:/box/1\n0::/\n";
        assert_eq!(
            oom_control_path(text, Path::new("/sys/fs/cgroup")),
            Some(PathBuf::from(
                "/sys/fs/cgroup/memory/box/1/memory.oom_control"
            ))
        );
        assert_eq!(oom_control_path("0::/\n", Path::new("/c")), None);
        let control = "oom_kill_disable 0\nunder_oom 0\noom_kill 4\n";
        assert_eq!(oom_kills(control), Some(4));
    }

    fn watch() -> OomWatch {
        OomWatch {
            events: None,
            last: Some(5),
            spell: None,
        }
    }

    #[test]
    fn two_workers_oom_killed_at_once_both_hear_it_and_a_third_exit_does_not() {
        let mut watch = watch();
        let now = Instant::now();
        // Both kills are counted before the first exit is handled.
        assert_eq!(watch.note(Some(7), true, now), Some(2));
        assert_eq!(
            watch.note(Some(7), true, now + Duration::from_millis(10)),
            Some(2)
        );
        // A third SIGKILL in the window: the two kills were told already.
        assert_eq!(
            watch.note(Some(7), true, now + Duration::from_millis(20)),
            None
        );
    }

    #[test]
    fn an_exit_of_another_cause_is_not_blamed_and_takes_no_victims_place() {
        let mut watch = watch();
        let now = Instant::now();
        assert_eq!(watch.note(Some(6), false, now), None);
        assert_eq!(
            watch.note(Some(6), true, now + Duration::from_millis(5)),
            Some(1)
        );
    }

    #[test]
    fn an_exit_after_the_window_is_not_blamed() {
        let mut watch = watch();
        let now = Instant::now();
        assert_eq!(watch.note(Some(6), true, now), Some(1));
        assert_eq!(watch.note(Some(7), false, now + WINDOW / 2), None);
        // The second kill came later: its spell is still open, until WINDOW after it.
        assert_eq!(watch.note(Some(7), true, now + WINDOW), Some(2));
        assert_eq!(watch.note(Some(7), true, now + WINDOW * 3), None);
        assert!(watch.spell.is_none());
    }

    #[test]
    fn the_oom_kill_count_is_read() {
        let text = "low 0\nhigh 0\nmax 3\noom 2\noom_kill 2\noom_group_kill 0\n";
        assert_eq!(oom_kills(text), Some(2));
        assert_eq!(oom_kills("low 0\n"), None);
    }
}
