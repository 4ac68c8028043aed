//! The built-in plugins. Each is named in `plugins(...)` of `#[wix_cluster::main]` or
//! added with [`ClusterBuilder::plugin`](crate::ClusterBuilder::plugin).

mod graceful;
mod lifecycle_log;
mod respawn;
mod stall;
mod statsd;

pub use graceful::Graceful;
pub use lifecycle_log::LifecycleLog;
pub use respawn::{CyclicPolicy, Respawn};
pub use stall::Stall;
pub use statsd::Statsd;
