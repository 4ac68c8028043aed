//! The cgroup's OOM kills: where `/proc/self/cgroup` leads to a cgroup v2 folder with a
//! `memory.events` file (or a v1 memory controller's `memory.oom_control`), its
//! `oom_kill` count, read at each worker exit to tell whether the kernel's OOM killer
//! struck since the last look. Missing files are no error: the exit's cause simply says
//! nothing about it.

use std::path::{Path, PathBuf};

/// The cgroup v2 mount point.
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// The master's cgroup's `memory.events`, and the `oom_kill` count last read from it.
pub(crate) struct OomWatch {
    events: Option<PathBuf>,
    last: Option<u64>,
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
        let mut watch = OomWatch { events, last: None };
        watch.last = watch.read();
        watch
    }

    fn read(&self) -> Option<u64> {
        let text = std::fs::read_to_string(self.events.as_ref()?).ok()?;
        oom_kills(&text)
    }

    /// How many processes of the cgroup the OOM killer killed since the last look
    /// (`None` for none, or when the count cannot be read).
    pub(crate) fn killed_since_last_look(&mut self) -> Option<u64> {
        let now = self.read()?;
        let grew = self.last.map_or(0, |last| now.saturating_sub(last));
        self.last = Some(now);
        (grew > 0).then_some(grew)
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

    #[test]
    fn the_oom_kill_count_is_read() {
        let text = "low 0\nhigh 0\nmax 3\noom 2\noom_kill 2\noom_group_kill 0\n";
        assert_eq!(oom_kills(text), Some(2));
        assert_eq!(oom_kills("low 0\n"), None);
    }
}
