//! The plugin trait: hooks run in the master and in every worker, and the lifecycle
//! events the master delivers.

use std::future::Future;
use std::pin::Pin;

use crate::{LifecycleEvent, Master, Worker};

/// The error a plugin hook returns. Any error type converts into it with `?`.
pub type PluginError = Box<dyn std::error::Error + Send + Sync>;

/// Extends the cluster. Every hook is optional.
///
/// - [`Plugin::on_master`] runs once in the master before any worker is spawned; an
///   error stops start-up (no worker is spawned, the master exits 1 naming the plugin).
/// - [`Plugin::on_worker`] runs in each worker before the app; an error ends that worker.
/// - [`Plugin::on_event`] runs in the master for every [`LifecycleEvent`], in order.
///
/// In single-process mode `on_master` and `on_worker` both run, in that process.
///
/// ```
/// use wix_cluster::{LifecycleEvent, Master, Plugin};
///
/// #[derive(Default)]
/// struct CountForks;
///
/// impl Plugin for CountForks {
///     fn on_event(&self, event: &LifecycleEvent, _master: &Master) {
///         if let LifecycleEvent::Fork(worker) = event {
///             tracing::info!("forked {worker}");
///         }
///     }
/// }
/// ```
pub trait Plugin: 'static {
    /// The name used in logs. Defaults to the type's name.
    fn name(&self) -> &str {
        std::any::type_name::<Self>()
    }

    /// Runs in the master before workers are spawned.
    fn on_master(&self, master: &Master) -> impl Future<Output = Result<(), PluginError>> {
        let _ = master;
        async { Ok(()) }
    }

    /// Runs in each worker before the app starts.
    fn on_worker(&self, worker: &Worker) -> impl Future<Output = Result<(), PluginError>> {
        let _ = worker;
        async { Ok(()) }
    }

    /// Runs in the master for every lifecycle event. It must not block: spawn a task
    /// for anything slow.
    fn on_event(&self, event: &LifecycleEvent, master: &Master) {
        let _ = (event, master);
    }
}

type HookFuture<'a> = Pin<Box<dyn Future<Output = Result<(), PluginError>> + 'a>>;

/// [`Plugin`] in a form that can be boxed.
pub(crate) trait DynPlugin {
    fn name(&self) -> &str;
    fn on_master<'a>(&'a self, master: &'a Master) -> HookFuture<'a>;
    fn on_worker<'a>(&'a self, worker: &'a Worker) -> HookFuture<'a>;
    fn on_event(&self, event: &LifecycleEvent, master: &Master);
}

impl<P: Plugin> DynPlugin for P {
    fn name(&self) -> &str {
        Plugin::name(self)
    }
    fn on_master<'a>(&'a self, master: &'a Master) -> HookFuture<'a> {
        Box::pin(Plugin::on_master(self, master))
    }
    fn on_worker<'a>(&'a self, worker: &'a Worker) -> HookFuture<'a> {
        Box::pin(Plugin::on_worker(self, worker))
    }
    fn on_event(&self, event: &LifecycleEvent, master: &Master) {
        Plugin::on_event(self, event, master)
    }
}

/// The plugins of a cluster, in the order they were added.
pub(crate) type Plugins = Vec<Box<dyn DynPlugin>>;
