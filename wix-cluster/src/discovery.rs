//! Finding the clusters running on this machine: every master with a management app
//! writes a small file, `<pid>.json`, in a private runtime directory, and removes it
//! when it exits (or hands its management app to a new master in an upgrade, which
//! writes its own). The `wix-cluster` command lists them with [`list`].
//!
//! The file says which program runs, its master's pid, where its management app
//! listens and when the master started; never the admin token. The directory is the
//! first of these that can be written (made `0700` if missing; one owned by another
//! user or open to others is skipped):
//!
//! 1. `$XDG_RUNTIME_DIR/wix-cluster` (a desktop or `systemd --user` session);
//! 2. `$HOME/.wix-cluster` (root, a service user with a home);
//! 3. `/tmp/wix-cluster-<uid>` (no home, or a read-only one: a container).
//!
//! Readers look in all three, since a master and an operator's shell seldom share the
//! same environment. A file whose pid is gone (a master killed with SIGKILL), or was
//! reused by a process that started after the file's master, is stale: [`list`] skips
//! and removes it.

use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// One running cluster, as its master describes itself in its discovery file.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Entry {
    /// The program's executable file name (`app.name` of the management app's `GET /`).
    pub name: String,
    /// The program's version, when known.
    pub version: Option<String>,
    /// The master's pid.
    pub pid: u32,
    /// Where the management app listens (its real port).
    pub management_addr: SocketAddr,
    /// The management app's mount point: `""` or a prefix such as `/admin`.
    pub mount_point: String,
    /// When the master started, Unix seconds.
    pub started_at: f64,
}

/// How far a process's start, as `/proc` tells it (to the clock tick, after a boot time
/// in whole seconds), may come after its file's `started_at` for the file to be its.
const START_SLACK: Duration = Duration::from_secs(5);

/// The directories a discovery file may be in, in the order a master tries them.
pub fn dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(runtime) = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from) {
        if runtime.is_absolute() {
            dirs.push(runtime.join("wix-cluster"));
        }
    }
    if let Some(home) = std::env::var_os("HOME").map(PathBuf::from) {
        if home.is_absolute() {
            dirs.push(home.join(".wix-cluster"));
        }
    }
    let uid = nix::unistd::geteuid().as_raw();
    dirs.push(std::env::temp_dir().join(format!("wix-cluster-{uid}")));
    dirs
}

/// Every cluster of this user running on this machine, oldest first; stale files are
/// removed on the way.
pub fn list() -> Vec<Entry> {
    let mut entries: Vec<Entry> = Vec::new();
    for dir in dirs() {
        if !is_private(&dir) {
            continue;
        }
        let Ok(files) = std::fs::read_dir(&dir) else {
            continue;
        };
        for file in files.filter_map(Result::ok) {
            let path = file.path();
            if let Some(pid) = staged_pid(&path) {
                // Left by a master that died between writing and renaming.
                if !crate::procfs::is_live(pid) {
                    let _ = std::fs::remove_file(&path);
                }
                continue;
            }
            if path.extension().is_none_or(|ext| ext != "json") {
                continue;
            }
            let Some(entry) = read(&path) else {
                continue;
            };
            if !is_running(&entry) {
                let _ = std::fs::remove_file(&path);
                continue;
            }
            if !entries.iter().any(|known| known.pid == entry.pid) {
                entries.push(entry);
            }
        }
    }
    entries.sort_by(|a, b| a.started_at.total_cmp(&b.started_at));
    entries
}

/// The pid of a file being written (`.<pid>.json.tmp`), if `path` is one.
fn staged_pid(path: &Path) -> Option<u32> {
    path.file_name()?
        .to_str()?
        .strip_prefix('.')?
        .strip_suffix(".json.tmp")?
        .parse()
        .ok()
}

/// The entry in `path`; `None` when it cannot be read or parsed (a file being written
/// is never seen half-written: it is renamed into place).
fn read(path: &Path) -> Option<Entry> {
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str(&text).ok()
}

/// Whether `entry`'s master still runs: its pid is a live process (not a zombie) that
/// did not start after the file's master did.
fn is_running(entry: &Entry) -> bool {
    if !crate::procfs::is_live(entry.pid) {
        return false;
    }
    let Some(started) = crate::procfs::started_at(entry.pid) else {
        return true;
    };
    let recorded = UNIX_EPOCH + Duration::from_secs_f64(entry.started_at.max(0.0));
    started <= recorded + START_SLACK
}

/// Whether `dir` is a directory (not a link) owned by this user and closed to others.
fn is_private(dir: &Path) -> bool {
    std::fs::symlink_metadata(dir).is_ok_and(|meta| {
        meta.is_dir() && meta.uid() == nix::unistd::geteuid().as_raw() && meta.mode() & 0o077 == 0
    })
}

/// A discovery file this process wrote; dropping it removes the file.
#[derive(Debug)]
pub(crate) struct Published {
    path: PathBuf,
}

impl Drop for Published {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Writes this master's discovery file in the first directory of [`dirs`] that takes
/// it; `None` (logged) when none does.
pub(crate) fn publish(entry: &Entry) -> Option<Published> {
    let text = match serde_json::to_vec(entry) {
        Ok(text) => text,
        Err(e) => {
            tracing::warn!("cannot write the discovery file: {e}");
            return None;
        }
    };
    let mut failures = Vec::new();
    for dir in dirs() {
        match write_in(&dir, entry.pid, &text) {
            Ok(path) => {
                tracing::debug!("discovery file {}", path.display());
                return Some(Published { path });
            }
            Err(e) => failures.push(format!("{}: {e}", dir.display())),
        }
    }
    tracing::warn!(
        "no discovery file written (`wix-cluster ls` will not list this cluster): {}",
        failures.join("; ")
    );
    None
}

/// Writes `text` as `<dir>/<pid>.json`, through a temporary file renamed into place;
/// makes `dir` (0700) if missing, and refuses one that is not private.
fn write_in(dir: &Path, pid: u32, text: &[u8]) -> std::io::Result<PathBuf> {
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    if !is_private(dir) {
        // Ours but open to others (made by hand): close it; anyone else's: skip it.
        let meta = std::fs::symlink_metadata(dir)?;
        if meta.is_dir() && meta.uid() == nix::unistd::geteuid().as_raw() {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        } else {
            return Err(std::io::Error::other(
                "not a directory of this user's, closed to others",
            ));
        }
    }
    let path = dir.join(format!("{pid}.json"));
    let staged = dir.join(format!(".{pid}.json.tmp"));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&staged)?;
    let written = file.write_all(text).and_then(|()| file.flush());
    drop(file);
    if let Err(e) = written.and_then(|()| std::fs::rename(&staged, &path)) {
        let _ = std::fs::remove_file(&staged);
        return Err(e);
    }
    Ok(path)
}

/// Unix seconds of `time` (0 before the epoch).
pub(crate) fn unix_seconds(time: SystemTime) -> f64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_pid_that_started_before_its_file_is_running() {
        let entry = Entry {
            name: "t".into(),
            version: None,
            pid: std::process::id(),
            management_addr: "127.0.0.1:1".parse().unwrap(),
            mount_point: String::new(),
            started_at: unix_seconds(SystemTime::now()),
        };
        assert!(is_running(&entry));
        let older = Entry {
            started_at: entry.started_at - 3600.0,
            ..entry.clone()
        };
        assert!(!is_running(&older), "a reused pid is not the file's master");
    }

    #[test]
    fn files_being_written_are_told_by_their_name() {
        assert_eq!(staged_pid(Path::new("/d/.42.json.tmp")), Some(42));
        assert_eq!(staged_pid(Path::new("/d/42.json")), None);
        assert_eq!(staged_pid(Path::new("/d/.x.json.tmp")), None);
    }
}
