//! Starting this program again with one end of a fresh channel inherited: how the
//! master starts its workers, and how an upgrade starts the new master.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::process::Stdio;
use std::sync::Arc;

use tokio::process::{Child, Command};

use crate::event::ExitReason;
use crate::ipc::{self, Outbox};

/// A started process and this end of its channel.
pub(crate) struct Started {
    pub(crate) pid: u32,
    pub(crate) child: Child,
    pub(crate) stream: Arc<ipc::Stream>,
    /// Frames to the process, written by a task of their own.
    pub(crate) out: Outbox,
}

/// Starts `command` (program, arguments and environment set) with stdin closed and the
/// other end of a new channel inherited, named in `channel_var` as `channel_value` of
/// its descriptor, and `inherit` (descriptors of this process, named in `command`'s
/// environment by the caller) inherited too. With `die_with_parent`, the process gets
/// SIGKILL when this thread ends (`PR_SET_PDEATHSIG`). `what` names it in logs.
pub(crate) fn start(
    mut command: Command,
    channel_var: &str,
    channel_value: impl FnOnce(RawFd) -> String,
    inherit: &[RawFd],
    die_with_parent: bool,
    what: String,
) -> io::Result<Started> {
    let (ours, theirs) = ipc::socketpair()?;
    let child_fd = theirs.as_raw_fd();
    let inherit = inherit.to_vec();
    command
        .env(channel_var, channel_value(child_fd))
        .stdin(Stdio::null());
    // SAFETY: runs in the child between fork and exec, and only makes async-signal-safe
    // system calls on values copied in.
    unsafe {
        command.pre_exec(move || {
            // Let the child's end of the channel survive exec (in the child only).
            if nix::libc::fcntl(child_fd, nix::libc::F_SETFD, 0) == -1 {
                return Err(io::Error::last_os_error());
            }
            for &fd in &inherit {
                if nix::libc::fcntl(fd, nix::libc::F_SETFD, 0) == -1 {
                    return Err(io::Error::last_os_error());
                }
            }
            if die_with_parent
                && nix::libc::prctl(nix::libc::PR_SET_PDEATHSIG, nix::libc::SIGKILL, 0, 0, 0) == -1
            {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = command.spawn()?;
    drop(theirs);
    let pid = child
        .id()
        .ok_or_else(|| io::Error::other(format!("{what} exited before it could be tracked")))?;
    let stream = ipc::into_stream(ours)?;
    let (out, writer) = Outbox::new(stream.clone());
    tokio::spawn(async move {
        if let Err(e) = writer.run().await {
            tracing::debug!("channel to {what} failed: {e}");
        }
    });
    Ok(Started {
        pid,
        child,
        stream,
        out,
    })
}

/// How `child` (`what`, `pid`) ended.
pub(crate) async fn exit_reason(mut child: Child, pid: u32, what: &str) -> ExitReason {
    match child.wait().await {
        Ok(status) => ExitReason::from(status),
        Err(e) => {
            tracing::error!("cannot wait for {what} (pid {pid}): {e}");
            ExitReason::Code(-1)
        }
    }
}
