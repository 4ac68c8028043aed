//! The program path as the user invoked it, and the build the cluster's workers run.
//!
//! `std::env::current_exe()` resolves symlinks (it reads `/proc/self/exe`), which would
//! pin the cluster to the release it started from. This module resolves `argv[0]`
//! instead, once at start-up, against `PATH` and the start directory, and keeps the
//! links in it: what a rolling restart and an upgrade execute, so that a deployment that
//! switches a `current -> releases/N` link deploys the new release.
//!
//! Respawns, scale-ups and recycles must not run whatever file is on disk now (a build
//! that was never tried, beside workers and a master of another): they run the build
//! the cluster's workers run, held open as an `O_PATH` descriptor ([`Build`]) and
//! executed through `/proc/self/fd/N`, which works when its file was deleted or
//! replaced. The held build starts as the master's own image and moves to the file on
//! disk only once a rolling restart's worker of that file is ready.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The program this process was started as, and its arguments.
#[derive(Debug, Clone)]
pub(crate) struct Program {
    /// Absolute, symlinks kept.
    path: PathBuf,
    args: Vec<OsString>,
}

/// Which build a worker spawn runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// Respawns, scale-ups and recycles: the build the cluster's workers run (held open,
    /// so that a deleted or replaced file still runs), never the file on disk.
    ClusterBuild,
    /// Rolling restarts: the program file on disk, or nothing (that is what they are
    /// for); the cluster's build moves to it once such a worker is ready.
    FileOnDisk,
}

/// An executable held open (`O_PATH`, close-on-exec: no worker or program an app starts
/// inherits it), which a spawn executes through `/proc/self/fd/N` whatever happened to
/// its file since. Close-on-exec does not get in the way: the kernel opens the file
/// while it resolves that path, before it closes such descriptors.
#[derive(Debug, Clone)]
pub(crate) struct Build {
    fd: Arc<OwnedFd>,
}

impl Build {
    /// Holds the file at `path` (following its links: the release they point at now).
    pub(crate) fn open(path: &Path) -> io::Result<Build> {
        use nix::fcntl::OFlag;
        let fd = nix::fcntl::open(
            path,
            OFlag::O_PATH | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(io::Error::from)?;
        Ok(Build { fd: Arc::new(fd) })
    }

    /// Holds this process's own image (`/proc/self/exe`, even when its file is gone).
    pub(crate) fn of_this_process() -> io::Result<Build> {
        Build::open(Path::new(crate::procfs::SELF_EXE))
    }

    /// The path that executes this build, in this process and in a child forked from it.
    fn exec_path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.fd.as_raw_fd()))
    }

    /// The file it is, as the kernel names it (` (deleted)` once unlinked), for logs.
    pub(crate) fn describe(&self) -> String {
        std::fs::read_link(self.exec_path()).map_or_else(
            |_| "an unknown file".to_owned(),
            |p| p.display().to_string(),
        )
    }
}

impl Program {
    /// Resolves `argv[0]` of this process (see the module's doc).
    pub(crate) fn of_this_process() -> io::Result<Program> {
        let mut argv = std::env::args_os();
        let argv0 = argv.next().unwrap_or_default();
        let args = argv.collect();
        let path = resolve(&argv0, std::env::var_os("PATH").as_deref(), &start_dir()?)
            .map_or_else(std::env::current_exe, Ok)?;
        Ok(Program { path, args })
    }

    /// The path rolling restarts and upgrades execute.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// A command that executes the program path (an upgrade's new master).
    pub(crate) fn command(&self) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(&self.path);
        command.args(&self.args);
        command
    }

    /// A command that executes `build`, with the program path as `argv[0]`.
    pub(crate) fn command_of(&self, build: &Build) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(build.exec_path());
        command.arg0(&self.path).args(&self.args);
        command
    }
}

/// The directory this process started in, with the symlinks the shell saw (`$PWD`, when
/// it names the same directory as `.`, as `pwd -L` does), else the physical one.
fn start_dir() -> io::Result<PathBuf> {
    let physical = std::env::current_dir()?;
    if let Some(logical) = std::env::var_os("PWD").map(PathBuf::from) {
        let same = |a: &Path, b: &Path| match (std::fs::metadata(a), std::fs::metadata(b)) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        };
        if logical.is_absolute() && same(&logical, &physical) {
            return Ok(logical);
        }
    }
    Ok(physical)
}

/// `argv0` as a path to execute: with a slash, relative to `start_dir`; without, the
/// first executable file of that name on `path_var` (as `execvp` searches it). `None`
/// when it cannot be found.
fn resolve(argv0: &OsStr, path_var: Option<&OsStr>, start_dir: &Path) -> Option<PathBuf> {
    if argv0.is_empty() {
        return None;
    }
    if argv0.as_bytes().contains(&b'/') {
        return Some(start_dir.join(argv0));
    }
    std::env::split_paths(path_var?)
        .map(|dir| {
            let dir = if dir.as_os_str().is_empty() {
                start_dir.to_path_buf()
            } else {
                start_dir.join(dir)
            };
            dir.join(argv0)
        })
        .find(|candidate| is_executable_file(candidate))
}

fn is_executable_file(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|meta| meta.is_file() && meta.mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_with_a_slash_is_taken_from_the_start_directory_links_and_all() {
        let start = Path::new("/srv/app");
        assert_eq!(
            resolve(OsStr::new("current/bin/app"), None, start),
            Some(PathBuf::from("/srv/app/current/bin/app"))
        );
        assert_eq!(
            resolve(OsStr::new("/opt/current/app"), None, start),
            Some(PathBuf::from("/opt/current/app"))
        );
    }

    #[test]
    fn a_bare_name_is_searched_on_path() {
        let found = resolve(
            OsStr::new("sh"),
            Some(OsStr::new("/nonexistent:/bin")),
            Path::new("/"),
        );
        assert_eq!(found, Some(PathBuf::from("/bin/sh")));
        assert_eq!(
            resolve(
                OsStr::new("no-such-program-here"),
                Some(OsStr::new("/bin")),
                Path::new("/")
            ),
            None
        );
        assert_eq!(
            resolve(OsStr::new(""), Some(OsStr::new("/bin")), Path::new("/")),
            None
        );
    }
}
