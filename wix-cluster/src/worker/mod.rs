//! The worker side: the [`Worker`] handle the app receives, its channel to the master,
//! and the worker process's entry point.

pub(crate) mod link;
mod panic;
pub(crate) mod process;

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::exchange::hub::Side;
use crate::master::listeners::Listeners;
use crate::protocol::ListenOn;
use crate::{StopReason, WorkerId};
use link::Link;

/// How a worker runs: one of the processes a master supervises, or the one process of
/// single-process mode (which is its own master too).
pub(crate) enum Mode {
    /// Behind a master, reached through the worker's channel.
    Cluster {
        /// The channel to the master.
        link: Arc<Link>,
    },
    /// Alone: the master's handle is in this process, and so are the listening sockets.
    Single {
        /// The in-process master handle.
        master: crate::Master,
        /// The process's own listening sockets (bound, or from systemd).
        sockets: parking_lot::Mutex<Listeners>,
    },
}

impl Mode {
    /// Single-process mode with `master`'s handle and the process's `sockets`.
    pub(crate) fn single(master: crate::Master, sockets: Listeners) -> Mode {
        Mode::Single {
            master,
            sockets: parking_lot::Mutex::new(sockets),
        }
    }

    /// The exchange hub's side for a worker in this mode: it sends to the master
    /// through the channel, or (single-process) delivers in this process.
    pub(crate) fn hub_side(&self) -> Side {
        match self {
            Mode::Cluster { link } => Side::Worker(link.outbox()),
            Mode::Single { .. } => Side::Single,
        }
    }

    /// The channel to the master, in cluster mode.
    fn link(&self) -> Option<&Link> {
        match self {
            Mode::Cluster { link } => Some(link),
            Mode::Single { .. } => None,
        }
    }
}

/// Why a worker drains, and until when.
#[derive(Debug, Clone, Copy)]
struct Stop {
    why: StopReason,
    deadline: Instant,
}

/// The app's handle on its worker: who it is, the shared listeners, and when to stop.
/// Cheap to clone.
#[derive(Clone)]
pub struct Worker {
    inner: Arc<Inner>,
}

struct Inner {
    id: WorkerId,
    generation: u32,
    mode: Mode,
    /// Why the worker drains and until when; `None` while it serves.
    stop: watch::Sender<Option<Stop>>,
    drain_timeout: Duration,
    /// The timeouts of the connections [`crate::http::serve`] serves.
    timeouts: crate::connection::Timeouts,
    /// Requests served by the HTTP helper.
    requests: AtomicU64,
    /// Accepts of the HTTP helper that failed for lack of descriptors or memory.
    accept_errors: AtomicU64,
    /// Ask to be recycled after this many requests (0: never).
    max_requests: AtomicU64,
}

impl Worker {
    pub(crate) fn new(
        id: WorkerId,
        generation: u32,
        mode: Mode,
        drain_timeout: Duration,
        timeouts: crate::connection::Timeouts,
    ) -> Worker {
        Worker {
            inner: Arc::new(Inner {
                id,
                generation,
                mode,
                stop: watch::Sender::new(None),
                drain_timeout,
                timeouts,
                requests: AtomicU64::new(0),
                accept_errors: AtomicU64::new(0),
                max_requests: AtomicU64::new(0),
            }),
        }
    }

    /// The worker's slot, `1..=workers` (0 in single-process mode). A respawned worker
    /// keeps the id of the one it replaces.
    pub fn id(&self) -> WorkerId {
        self.inner.id
    }

    /// How many workers held this slot before this one.
    pub fn generation(&self) -> u32 {
        self.inner.generation
    }

    /// This process's id.
    pub fn pid(&self) -> u32 {
        std::process::id()
    }

    /// Whether the app runs as the one process of single-process mode.
    pub fn is_single_process(&self) -> bool {
        matches!(self.inner.mode, Mode::Single { .. })
    }

    /// A listener on `addr` shared by every worker.
    ///
    /// The master binds `addr` once (port 0 picks one ephemeral port for all workers),
    /// keeps the socket, and hands each worker the same descriptor, so all workers
    /// accept from one kernel queue. Under systemd's socket activation, a socket systemd
    /// passed with that address (or port, when either address is unspecified) is used
    /// in place of binding. In single-process mode the process binds it itself.
    pub async fn listen(&self, addr: impl std::net::ToSocketAddrs) -> io::Result<TcpListener> {
        let addr = crate::listener::resolve(addr)?;
        self.listen_on(ListenOn::Addr(addr)).await
    }

    /// The listener systemd's socket activation passed under `name`
    /// (`FileDescriptorName=` in the `.socket` unit, seen as `LISTEN_FDNAMES`), shared by
    /// every worker like [`Worker::listen`]'s. Never binds: without a socket of that name
    /// it is an error naming the sockets there are.
    pub async fn listen_named(&self, name: &str) -> io::Result<TcpListener> {
        self.listen_on(ListenOn::Name(name.to_owned())).await
    }

    async fn listen_on(&self, on: ListenOn) -> io::Result<TcpListener> {
        let fd = match &self.inner.mode {
            Mode::Cluster { link } => {
                let fd = link.listen(on).await?;
                crate::fair_share::gate::shared(&fd);
                fd
            }
            Mode::Single { master, sockets } => {
                let bound = sockets.lock().get(&on)?;
                master.add_app_addr(bound.addr);
                bound.fd.try_clone()?
            }
        };
        let std = std::net::TcpListener::from(fd);
        std.set_nonblocking(true)?;
        TcpListener::from_std(std)
    }

    /// Resolves when the worker should stop: the master asked (cluster shutdown), or
    /// this process got SIGTERM or SIGINT. Pass it to a server's graceful shutdown:
    ///
    /// ```no_run
    /// # async fn app(worker: wix_cluster::Worker, listener: tokio::net::TcpListener) -> std::io::Result<()> {
    /// let app = axum::Router::new();
    /// axum::serve(listener, app).with_graceful_shutdown(worker.shutdown()).await
    /// # }
    /// ```
    ///
    /// The future does not borrow the worker (`use<>`): it may be taken in a handler and
    /// moved into a task or a WebSocket's `on_upgrade`.
    pub fn shutdown(&self) -> impl Future<Output = ()> + Send + 'static + use<> {
        let mut stop = self.inner.stop.subscribe();
        async move {
            // An error means the worker is gone, which is a reason to stop too.
            let _ = stop.wait_for(Option::is_some).await;
        }
    }

    /// Whether a stop was requested (see [`Worker::shutdown`]).
    pub fn is_shutting_down(&self) -> bool {
        self.inner.stop.borrow().is_some()
    }

    /// Why the worker drains, once [`Worker::shutdown`] resolved: a restart (a roll, an
    /// upgrade, a recycle, a scale-down: clients should reconnect, another worker takes
    /// them) or the cluster's stop.
    pub fn stop_reason(&self) -> Option<StopReason> {
        self.inner.stop.borrow().map(|stop| stop.why)
    }

    /// When the drain's time is up: [`crate::http::serve`] gives up on the connections
    /// still open then, a little before the master's kill at the drain timeout. `None`
    /// while the worker serves.
    pub fn drain_deadline(&self) -> Option<Instant> {
        self.inner.stop.borrow().map(|stop| stop.deadline)
    }

    /// Resolves `margin` before the drain's deadline ([`Worker::drain_deadline`]),
    /// which the master may bring forward: when too many generations of old workers
    /// are draining (`Graceful`'s `max_draining`), the oldest are told their time is up.
    /// What is still open then is to be closed. Pending while the worker serves.
    pub fn drain_time_up(
        &self,
        margin: Duration,
    ) -> impl Future<Output = ()> + Send + 'static + use<> {
        let mut stop = self.inner.stop.subscribe();
        async move {
            loop {
                let deadline = stop.borrow_and_update().map(|stop| stop.deadline);
                let changed = match deadline {
                    Some(deadline) => {
                        let at = deadline.checked_sub(margin).unwrap_or(deadline);
                        tokio::select! {
                            () = tokio::time::sleep_until(at) => return,
                            changed = stop.changed() => changed,
                        }
                    }
                    None => stop.changed().await,
                };
                if changed.is_err() {
                    // The worker is gone: nothing will change the deadline now.
                    if let Some(deadline) = deadline {
                        tokio::time::sleep_until(deadline.checked_sub(margin).unwrap_or(deadline))
                            .await;
                        return;
                    }
                    std::future::pending::<()>().await;
                }
            }
        }
    }

    /// How long a drain may take once [`Worker::shutdown`] resolves before the master
    /// kills the worker (the `Graceful` plugin's timeout, default 5 s). Servers should
    /// give up on open connections a little before it.
    pub fn drain_timeout(&self) -> Duration {
        self.inner.drain_timeout
    }

    /// Requests served so far by [`crate::http::serve`] (reported to the master with
    /// every heartbeat).
    pub fn requests_served(&self) -> u64 {
        self.inner.requests.load(Ordering::Relaxed)
    }

    /// Asks the master to recycle this worker (successor first, then drain) once
    /// [`crate::http::serve`] has served `max` requests; 0 turns it off. The `Stall`
    /// plugin's `max_requests` sets it.
    pub fn set_max_requests(&self, max: u64) {
        self.inner.max_requests.store(max, Ordering::Relaxed);
    }

    /// Counts one request; asks for a recycle when the limit is reached.
    /// Counts an accept that failed for lack of descriptors or memory; returns the
    /// count so far.
    pub(crate) fn count_accept_error(&self) -> u64 {
        self.inner.accept_errors.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub(crate) fn count_request(&self) {
        let served = self.inner.requests.fetch_add(1, Ordering::Relaxed) + 1;
        let max = self.inner.max_requests.load(Ordering::Relaxed);
        if max != 0 && served == max {
            self.recycle(format!("served {max} requests (max_requests)"));
        }
    }

    /// Asks the master to replace this worker gracefully: its successor starts, then
    /// this worker drains. Does nothing in single-process mode.
    pub fn recycle(&self, reason: impl Into<String>) {
        if let Some(link) = self.inner.mode.link() {
            link.send(&crate::protocol::ToMaster::Recycle {
                reason: reason.into(),
            });
        }
    }

    pub(crate) fn send_heartbeat(&self) {
        if let Some(link) = self.inner.mode.link() {
            link.send(&crate::protocol::ToMaster::Heartbeat {
                requests: self.requests_served(),
                accept_errors: self.inner.accept_errors.load(Ordering::Relaxed),
                connections: crate::connection::drain::app_open(),
                load: crate::busy::read(),
            });
        }
    }

    /// The connection timeouts (header read, idle) of this process's HTTP servers.
    pub(crate) fn timeouts(&self) -> crate::connection::Timeouts {
        self.inner.timeouts
    }

    /// Starts the drain for `why` (resolves [`Worker::shutdown`]); the first reason
    /// given stays.
    pub(crate) fn begin_shutdown(&self, why: StopReason) {
        self.inner.stop.send_if_modified(|stop| {
            if stop.is_some() {
                return false;
            }
            let deadline = Instant::now() + crate::http::drain_budget(self.inner.drain_timeout);
            *stop = Some(Stop { why, deadline });
            true
        });
    }

    /// The master says the drain's time is up now (too many generations draining):
    /// what is still open is closed.
    pub(crate) fn hurry(&self) {
        let now = Instant::now();
        self.inner.stop.send_modify(|stop| match stop {
            Some(stop) => stop.deadline = stop.deadline.min(now),
            None => {
                *stop = Some(Stop {
                    why: StopReason::Restart,
                    deadline: now,
                });
            }
        });
    }

    /// Tells the master this worker is going down on its own, so that it starts a
    /// replacement now; then starts the drain.
    pub(crate) fn going_down(&self, reason: String) {
        self.announce_going_down(reason, false);
    }

    /// [`Worker::going_down`] because of the signal `name` (SIGTERM, SIGQUIT): the
    /// master waits a moment before replacing it, in case the signal was sent to every
    /// process of the cluster and is about to stop the master too.
    pub(crate) fn signalled_down(&self, name: &str) {
        self.announce_going_down(format!("got {name}"), true);
    }

    /// The worker goes down on its own: the master replaces it, so to its clients it is
    /// a restart; in single-process mode the service stops.
    fn announce_going_down(&self, reason: String, signalled: bool) {
        if let Some(link) = self.inner.mode.link() {
            if !self.is_shutting_down() {
                link.send(&crate::protocol::ToMaster::GoingDown { reason, signalled });
            }
        }
        let why = if self.is_single_process() {
            StopReason::Stop
        } else {
            StopReason::Restart
        };
        self.begin_shutdown(why);
    }

    /// Tells the master how [`crate::http::serve`]'s drain ended (for its event log).
    pub(crate) fn report_drained(&self, left: usize, upgraded: usize, took: Duration) {
        if let Some(link) = self.inner.mode.link() {
            link.send(&crate::protocol::ToMaster::Drained {
                left: u32::try_from(left).unwrap_or(u32::MAX),
                upgraded: u32::try_from(upgraded).unwrap_or(u32::MAX),
                silent: crate::websocket::given_up(),
                took_ms: u64::try_from(took.as_millis()).unwrap_or(u64::MAX),
            });
        }
    }

    /// Waits until what was sent to the master has been written.
    pub(crate) async fn flush(&self) {
        if let Some(link) = self.inner.mode.link() {
            link.flush().await;
        }
    }
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("id", &self.inner.id)
            .field("generation", &self.inner.generation)
            .field("pid", &self.pid())
            .field("single_process", &self.is_single_process())
            .finish()
    }
}
