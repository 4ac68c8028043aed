//! The program path as the user invoked it: what every worker spawn, rolling restart and
//! master upgrade executes, so that a deployment that switches a `current -> releases/N`
//! link deploys the new release.
//!
//! `std::env::current_exe()` resolves symlinks (it reads `/proc/self/exe`), which would
//! pin the cluster to the release it started from. This module resolves `argv[0]`
//! instead, once at start-up, against `PATH` and the start directory, and keeps the
//! links in it. When that path cannot be executed any more (the release was deleted, a
//! copy is half-written), a spawn that must not lose capacity falls back to the running
//! image, `/proc/self/exe`, which the kernel keeps even when its file is deleted.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The running image, executable even when its file was deleted or replaced.
const RUNNING_IMAGE: &str = crate::procfs::SELF_EXE;

/// The program this process was started as, and its arguments.
#[derive(Debug, Clone)]
pub(crate) struct Program {
    /// Absolute, symlinks kept.
    path: PathBuf,
    args: Vec<OsString>,
}

/// Whether a spawn may fall back to the running image when the program path cannot be
/// executed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fallback {
    /// Respawns and scale-ups: capacity first (the running image speaks the protocol).
    RunningImage,
    /// Rolling restarts and upgrades: they exist to run the program on disk.
    Never,
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

    /// The path spawns execute.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// A command for this program (`argv[0]` is the program path); `running_image`
    /// executes this process's own image instead.
    pub(crate) fn command(&self, running_image: bool) -> tokio::process::Command {
        let mut command = if running_image {
            tokio::process::Command::new(RUNNING_IMAGE)
        } else {
            tokio::process::Command::new(&self.path)
        };
        command.arg0(&self.path).args(&self.args);
        command
    }
}

/// Whether `error` from a spawn means the program file itself cannot be executed (as
/// opposed to the system being short of processes, memory or descriptors).
pub(crate) fn cannot_execute(error: &io::Error) -> bool {
    use nix::libc;
    matches!(
        error.raw_os_error(),
        Some(
            libc::ENOENT
                | libc::EACCES
                | libc::ENOEXEC
                | libc::ETXTBSY
                | libc::ENOTDIR
                | libc::ELOOP
                | libc::EPERM
                | libc::ENAMETOOLONG
        )
    )
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

    #[test]
    fn only_errors_about_the_file_allow_the_fallback() {
        let os = |code| io::Error::from_raw_os_error(code);
        assert!(cannot_execute(&os(nix::libc::ENOENT)));
        assert!(cannot_execute(&os(nix::libc::ETXTBSY)));
        assert!(!cannot_execute(&os(nix::libc::EMFILE)));
        assert!(!cannot_execute(&os(nix::libc::EAGAIN)));
    }
}
