//! Everything the runtime reads from `/proc`, in one place: a process's CPU time and
//! resident memory, its open descriptors and their limit, this process's children,
//! tracer and cgroups, the path of its running image, and who is in a process group.

use std::io;
use std::sync::OnceLock;
use std::time::Duration;

/// A reading of `/proc/<pid>/stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProcStat {
    /// User plus system CPU time so far.
    pub(crate) cpu_time: Duration,
    /// Resident set size.
    pub(crate) rss_bytes: u64,
}

fn clock_ticks_per_second() -> u64 {
    static TICKS: OnceLock<u64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
            .ok()
            .flatten()
            .and_then(|ticks| u64::try_from(ticks).ok())
            .filter(|&ticks| ticks > 0)
            .unwrap_or(100)
    })
}

fn page_size() -> u64 {
    static PAGE: OnceLock<u64> = OnceLock::new();
    *PAGE.get_or_init(|| {
        nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
            .ok()
            .flatten()
            .and_then(|size| u64::try_from(size).ok())
            .unwrap_or(4096)
    })
}

/// Reads `pid`'s CPU time and RSS.
pub(crate) fn stat(pid: u32) -> io::Result<ProcStat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_stat(&text, clock_ticks_per_second(), page_size()).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unreadable /proc/{pid}/stat"),
        )
    })
}

/// The memory the machine can give new processes without swapping
/// (`MemAvailable` of `/proc/meminfo`), in bytes.
pub(crate) fn mem_available() -> io::Result<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo")?;
    meminfo
        .lines()
        .find_map(|line| line.strip_prefix("MemAvailable:"))
        .and_then(|rest| rest.trim().strip_suffix("kB"))
        .and_then(|kib| kib.trim().parse::<u64>().ok())
        .map(|kib| kib.saturating_mul(1024))
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                "no MemAvailable in /proc/meminfo",
            )
        })
}

/// How many descriptors `pid` has open (`/proc/<pid>/fd`).
pub(crate) fn open_fds(pid: u32) -> io::Result<usize> {
    Ok(std::fs::read_dir(format!("/proc/{pid}/fd"))?.count())
}

/// `pid`'s soft limit on open descriptors (`Max open files` in `/proc/<pid>/limits`);
/// `None` when unlimited or unreadable.
pub(crate) fn max_fds(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    parse_max_fds(&text)
}

fn parse_max_fds(text: &str) -> Option<u64> {
    let line = text
        .lines()
        .find(|line| line.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The running image (`/proc/self/exe`): opens and executes even when its file was deleted or
/// replaced.
pub(crate) const SELF_EXE: &str = "/proc/self/exe";

/// This process's children, from `/proc/self/task/*/children` (none if unreadable).
pub(crate) fn children() -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    tasks
        .filter_map(Result::ok)
        .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|list| {
            list.split_whitespace()
                .filter_map(|pid| pid.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

/// The state letter and process group of `pid` (`/proc/<pid>/stat`), if it exists.
fn state_and_group(pid: &str) -> Option<(char, u32)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid pgrp ...`: the command may hold spaces and parentheses.
    let mut fields = text.get(text.rfind(')')? + 1..)?.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let group = fields.nth(1)?.parse().ok()?;
    Some((state, group))
}

/// Whether process `pid` exists (a zombie too).
pub(crate) fn exists(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Whether process `pid` exists and is not a zombie.
pub(crate) fn is_live(pid: u32) -> bool {
    state_and_group(&pid.to_string()).is_some_and(|(state, _)| state != 'Z')
}

/// When process `pid` started (`starttime` in `/proc/<pid>/stat` after the boot time in
/// `/proc/stat`), to the clock tick; `None` when either is unreadable.
pub(crate) fn started_at(pid: u32) -> Option<std::time::SystemTime> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Field 22 is starttime; the fields after the name start at field 3.
    let ticks: u64 = text
        .get(text.rfind(')')? + 1..)?
        .split_whitespace()
        .nth(22 - 3)?
        .parse()
        .ok()?;
    let system = std::fs::read_to_string("/proc/stat").ok()?;
    let boot: u64 = system
        .lines()
        .find_map(|line| line.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    let since_boot =
        Duration::from_nanos(ticks.saturating_mul(1_000_000_000) / clock_ticks_per_second());
    Some(std::time::UNIX_EPOCH + Duration::from_secs(boot) + since_boot)
}

/// Whether some live (not zombie) process is in the process group `group`.
pub(crate) fn group_has_live_members(group: u32) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries.filter_map(Result::ok).any(|entry| {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            return false;
        };
        state_and_group(pid).is_some_and(|(state, g)| g == group && state != 'Z')
    })
}

/// This process's cgroups, `/proc/self/cgroup` as the kernel writes it (`0::/path` for
/// cgroup v2); `None` if unreadable.
pub(crate) fn cgroups() -> Option<String> {
    std::fs::read_to_string("/proc/self/cgroup").ok()
}

/// Whether a debugger (anything using ptrace) is attached to this process
/// (`TracerPid` in `/proc/self/status`); `false` if unreadable.
pub(crate) fn debugger_attached() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| tracer_pid(&status))
        .is_some_and(|pid| pid != 0)
}

/// The `TracerPid` of a `status` text.
fn tracer_pid(status: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("TracerPid:"))?
        .trim()
        .parse()
        .ok()
}

/// Parses a `stat` line (the command name may contain spaces and parentheses).
fn parse_stat(text: &str, ticks_per_second: u64, page_size: u64) -> Option<ProcStat> {
    let after_name = text.rsplit_once(')')?.1;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Fields after the name start at field 3 (state): utime is 14, stime 15, rss 24.
    let field = |n: usize| -> Option<u64> { fields.get(n - 3)?.parse().ok() };
    let ticks = field(14)? + field(15)?;
    let rss_pages = field(24)?;
    Some(ProcStat {
        cpu_time: Duration::from_nanos(ticks.saturating_mul(1_000_000_000) / ticks_per_second),
        rss_bytes: rss_pages.saturating_mul(page_size),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cpu_time_and_rss_even_with_odd_process_names() {
        let line = "4242 (my (odd) app) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 50 0 0 20 0 1 0 \
                    12345 100000000 2560 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        let stat = parse_stat(line, 100, 4096).unwrap();
        assert_eq!(stat.cpu_time, Duration::from_secs(3));
        assert_eq!(stat.rss_bytes, 2560 * 4096);
    }

    #[test]
    fn this_process_started_before_now_and_after_boot() {
        let started = started_at(std::process::id()).unwrap();
        let now = std::time::SystemTime::now();
        assert!(started <= now + Duration::from_secs(1));
        assert!(now.duration_since(started).unwrap_or_default() < Duration::from_secs(3600));
    }

    #[test]
    fn reads_this_process() {
        let stat = stat(std::process::id()).unwrap();
        assert!(stat.rss_bytes > 0);
    }

    #[test]
    fn the_tracer_is_read_from_status() {
        assert_eq!(tracer_pid("Name:\tapp\nTracerPid:\t0\n"), Some(0));
        assert_eq!(
            tracer_pid("Name:\tapp\nTracerPid:\t4242\nUid:\t0\n"),
            Some(4242)
        );
        assert_eq!(tracer_pid("Name:\tapp\n"), None);
    }

    #[test]
    fn the_children_of_this_process_are_listed() {
        let mut child = std::process::Command::new("sleep")
            .arg("10")
            .spawn()
            .expect("sleep runs");
        assert!(children().contains(&child.id()));
        let _ = child.kill();
        let _ = child.wait();
    }

    #[test]
    fn the_soft_descriptor_limit_is_read_from_limits() {
        let text = "Limit                     Soft Limit           Hard Limit           Units     \n\
                    Max processes             95634                95634                processes \n\
                    Max open files            1024                 20000                files     \n";
        assert_eq!(parse_max_fds(text), Some(1024));
        assert!(open_fds(std::process::id()).is_ok_and(|n| n > 0));
        assert!(max_fds(std::process::id()).is_some());
    }
}
