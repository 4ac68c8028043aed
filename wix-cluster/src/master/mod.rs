//! The master: spawns the workers, hands them the shared listeners, delivers lifecycle
//! events to plugins, and stops everything gracefully on SIGTERM / SIGINT.

mod accept_queue;
mod exit_cause;
mod groups;
mod handle;
mod keeper;
pub(crate) mod listeners;
mod oom;
mod program;
mod reexec;
mod spawn;
mod supervisor;
mod systemd;
mod table;
mod upgrade;
mod watch;

pub use handle::{ClusterCounters, Master};
pub(crate) use handle::{Command, RunTimeChanges};
pub(crate) use supervisor::run;

#[cfg(feature = "fuzzing")]
pub(crate) use upgrade::fuzz_handing;
