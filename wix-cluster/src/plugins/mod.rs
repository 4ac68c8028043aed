//! The built-in plugins. Each is named in `plugins(...)` of `#[wix_cluster::main]` or
//! added with [`ClusterBuilder::plugin`](crate::ClusterBuilder::plugin).

mod autoscale;
mod graceful;
mod lifecycle_log;
mod respawn;
mod stall;
mod statsd;

use std::any::TypeId;

use crate::plugin::DynPlugin;

pub use autoscale::{Autoscale, AutoscaleMax, DEFAULT_MEMORY_FLOOR};
pub use graceful::Graceful;
pub use lifecycle_log::LifecycleLog;
pub use respawn::{CyclicPolicy, Respawn};
pub use stall::Stall;
pub use statsd::Statsd;

/// The built-in plugins every cluster runs with their defaults unless it names them
/// (then they run as configured) or turns them off
/// ([`ClusterBuilder::without`](crate::ClusterBuilder::without), `without(...)` in
/// `#[wix_cluster::main]`): a cluster with no `plugins(...)` replaces dead workers,
/// drains with a timeout, and kills stalled ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DefaultPlugin {
    /// [`Respawn`]: dead workers are replaced, cyclic death detected.
    Respawn,
    /// [`Graceful`]: a stopping worker drains for at most 5 s.
    Graceful,
    /// [`Stall`]: a worker whose heartbeat stops for 30 s is killed and replaced.
    Stall,
}

impl DefaultPlugin {
    /// Every default plugin, in the order they run (before the program's own plugins).
    pub const ALL: [DefaultPlugin; 3] = [
        DefaultPlugin::Respawn,
        DefaultPlugin::Graceful,
        DefaultPlugin::Stall,
    ];

    /// The plugin's type, to tell whether a program named it.
    pub(crate) fn type_id(self) -> TypeId {
        match self {
            DefaultPlugin::Respawn => TypeId::of::<Respawn>(),
            DefaultPlugin::Graceful => TypeId::of::<Graceful>(),
            DefaultPlugin::Stall => TypeId::of::<Stall>(),
        }
    }

    /// The plugin with its defaults.
    pub(crate) fn instance(self) -> Box<dyn DynPlugin> {
        match self {
            DefaultPlugin::Respawn => Box::new(Respawn::default()),
            DefaultPlugin::Graceful => Box::new(Graceful::default()),
            DefaultPlugin::Stall => Box::new(Stall::default()),
        }
    }
}
