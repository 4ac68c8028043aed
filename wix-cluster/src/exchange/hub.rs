//! The process's exchange hub: subscribers, request handlers and app-scoped data by
//! topic, and the way out of the process (the channel to the master, or the channels
//! to every worker).
//!
//! The hub sends through the outboxes it is given (at construction in a worker, as
//! workers attach in the master) and never reads a channel: the channels' readers hand
//! it what arrives.

use parking_lot::{Mutex, MutexGuard};
use std::any::{Any, TypeId};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};

use super::{ExchangeError, Peer};
use crate::WorkerId;
use crate::event::WorkerKey;
use crate::ipc::{self, Correlation, FrameError, Outbox};
use crate::protocol::{ExchangeRef, ToMaster, ToWorker};

/// The most requests one worker may have the master handle at once; past it, requests
/// are answered with an error at once.
pub(crate) const MAX_REQUESTS_IN_FLIGHT: usize = 256;

/// A worker's request, as its channel's reader hands it over.
pub(crate) struct WorkerRequest {
    pub(crate) from: WorkerId,
    pub(crate) id: u64,
    pub(crate) topic: String,
    pub(crate) payload: Vec<u8>,
    /// How long the worker waits for the answer.
    pub(crate) timeout: std::time::Duration,
}

/// The requests of one worker process being handled: counted, and all given up when
/// the scope is dropped (its channel's reader ends: the worker is gone).
pub(crate) struct RequestScope {
    in_flight: Arc<std::sync::atomic::AtomicUsize>,
    gone: watch::Sender<()>,
}

impl Default for RequestScope {
    fn default() -> Self {
        RequestScope {
            in_flight: Arc::default(),
            gone: watch::Sender::new(()),
        }
    }
}

/// One request of a [`RequestScope`], counted while it lives.
struct InFlight(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl RequestScope {
    fn enter(&self) -> Option<InFlight> {
        let before = self.in_flight.fetch_add(1, Ordering::Relaxed);
        let guard = InFlight(self.in_flight.clone());
        (before < MAX_REQUESTS_IN_FLIGHT).then_some(guard)
    }

    /// Changes (with an error) once the scope is dropped.
    fn gone(&self) -> watch::Receiver<()> {
        self.gone.subscribe()
    }
}

/// One delivered message, still encoded (each subscriber decodes it as its type).
pub(crate) struct Envelope {
    pub(crate) from: Peer,
    pub(crate) payload: Arc<[u8]>,
    /// The part of its subscriber's budget it holds until it is received.
    _budget: OwnedSemaphorePermit,
}

/// How many bytes of messages may wait for one subscriber (64 MiB; each message counts
/// at least [`MIN_COST`]). A message past it waits up to [`BUDGET_WAIT`] when it comes
/// from a worker's channel (which stops being read meanwhile: back-pressure onto that
/// worker), and is dropped, counted and logged when it does not fit by then, or at once
/// when it comes from this process.
pub(crate) const SUBSCRIBER_BUDGET: usize = 64 << 20;
const MIN_COST: usize = 64;
const BUDGET_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// A subscriber's queue and its byte budget.
#[derive(Clone)]
struct Subscriber {
    tx: mpsc::UnboundedSender<Envelope>,
    budget: Arc<Semaphore>,
    /// Its last message from a worker did not fit: the next ones are not waited for,
    /// until one fits again (a flood costs one wait, not one per message).
    overflowing: Arc<std::sync::atomic::AtomicBool>,
}

fn cost(payload: &[u8]) -> u32 {
    u32::try_from(payload.len().max(MIN_COST)).unwrap_or(u32::MAX)
}

pub(crate) type HandlerFuture = Pin<Box<dyn Future<Output = Result<Vec<u8>, String>> + Send>>;
pub(crate) type Handler = Arc<dyn Fn(Peer, Vec<u8>) -> HandlerFuture + Send + Sync>;

/// Which side of the cluster this process is, and so where its messages go.
pub(crate) enum Side {
    /// The master: to the workers' channels, as they attach.
    Master,
    /// A worker: through its channel to the master (see `worker::Mode::hub_side`).
    Worker(Outbox),
    /// The one process of single-process mode, master and worker 0 at once: to this
    /// process's own subscribers and handlers.
    Single,
}

/// A value of app-scoped data: its bytes, and its decoded form once someone asked.
pub(crate) struct DataCell {
    pub(crate) bytes: Arc<[u8]>,
    pub(crate) decoded: Option<Arc<dyn Any + Send + Sync>>,
}

pub(crate) struct Hub {
    side: Side,
    state: Mutex<State>,
    /// Worker: requests waiting for the master's answer.
    requests: Correlation<Result<Vec<u8>, String>>,
    undecodable: AtomicU64,
    /// Messages dropped because a subscriber's budget was spent.
    dropped: AtomicU64,
    /// Master: broadcasts and `send_to`s a worker missed because its channel's backlog
    /// was full.
    refused: AtomicU64,
}

/// The master's counter of broadcasts and `send_to`s not sent to a worker whose
/// channel's backlog was full (the caller got [`ExchangeError::Backlog`]).
pub(crate) const REFUSED_TOTAL: &str = "wix_cluster_exchange_backlog_refused_total";

#[derive(Default)]
struct State {
    /// Topic -> the type that claimed it.
    topics: HashMap<&'static str, (TypeId, &'static str)>,
    subscribers: HashMap<String, Vec<Subscriber>>,
    handlers: HashMap<String, Handler>,
    data: HashMap<String, DataCell>,
    /// Bumped on every change of a topic's data.
    data_versions: HashMap<String, watch::Sender<u64>>,
    /// Master: the channel of every worker process that completed its handshake and
    /// has not ended, by slot and generation. A slot mid-handover has two: both get
    /// broadcasts and app data, `send_to` reaches the newest.
    workers: BTreeMap<WorkerKey, Link>,
    /// Master: the sinks of reserved topics (see [`Hub::intercept`]).
    sinks: Vec<(&'static str, Sink)>,
}

/// What takes a reserved topic's messages in the master: the worker process and the
/// payload.
pub(crate) type Sink = Arc<dyn Fn(WorkerKey, &[u8]) + Send + Sync>;

/// The master's link to one worker process.
struct Link {
    out: Outbox,
    /// Topics whose current app data did not fit in the channel's backlog: the newest
    /// value of each goes once the worker has read what is queued (one task per
    /// worker, [`Hub::catch_up`]). Never more than the topics there are.
    stale: BTreeSet<String>,
}

static HUB: OnceLock<Hub> = OnceLock::new();

/// Installs this process's hub (once, when its role starts).
pub(crate) fn install(side: Side) -> &'static Hub {
    HUB.get_or_init(|| Hub {
        side,
        state: Mutex::default(),
        requests: Correlation::default(),
        undecodable: AtomicU64::new(0),
        dropped: AtomicU64::new(0),
        refused: AtomicU64::new(0),
    })
}

/// This process's hub.
pub(crate) fn hub() -> Result<&'static Hub, ExchangeError> {
    HUB.get().ok_or(ExchangeError::NotRunning)
}

/// One frame, encoded for sending to several workers.
fn encode_to_worker(msg: &impl serde::Serialize) -> Option<Vec<u8>> {
    let mut bytes = Vec::new();
    match ipc::encode(msg, &mut bytes) {
        Ok(()) => Some(bytes),
        Err(e) => {
            tracing::error!("cannot encode an exchange message for a worker: {e}");
            None
        }
    }
}

impl Hub {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock()
    }

    pub(crate) fn side(&self) -> &Side {
        &self.side
    }

    /// Claims `topic` for type `T`; another type on the same topic is an error.
    pub(crate) fn claim<T: 'static>(&self, topic: &'static str) -> Result<(), ExchangeError> {
        let name = std::any::type_name::<T>();
        let mut state = self.state();
        let (first_id, first) = *state
            .topics
            .entry(topic)
            .or_insert((TypeId::of::<T>(), name));
        if first_id != TypeId::of::<T>() {
            return Err(ExchangeError::TopicClash {
                topic,
                first,
                second: name,
            });
        }
        Ok(())
    }

    /// Messages that failed to decode, since start.
    pub(crate) fn undecodable(&self) -> u64 {
        self.undecodable.load(Ordering::Relaxed)
    }

    pub(crate) fn count_undecodable(
        &self,
        topic: &str,
        type_name: &str,
        error: &dyn std::fmt::Display,
    ) {
        self.undecodable.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            "dropping a message on topic {topic:?} that does not decode as {type_name}: {error}"
        );
    }

    pub(crate) fn subscribe(&self, topic: &str) -> mpsc::UnboundedReceiver<Envelope> {
        let (tx, rx) = mpsc::unbounded_channel();
        let budget = Arc::new(Semaphore::new(SUBSCRIBER_BUDGET));
        self.state()
            .subscribers
            .entry(topic.to_owned())
            .or_default()
            .push(Subscriber {
                tx,
                budget,
                overflowing: Arc::default(),
            });
        rx
    }

    /// Messages dropped since start because a subscriber had too many bytes waiting.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    fn count_dropped(&self, topic: &str) {
        let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        // The 1st, 2nd, 4th, 8th... drop is logged: a flood costs a few lines.
        if dropped.is_power_of_two() {
            tracing::warn!(
                "dropping a message on topic {topic:?}: its subscriber has {SUBSCRIBER_BUDGET} \
                 bytes waiting ({dropped} messages dropped so far)"
            );
        }
    }

    /// Master: where the messages of a reserved topic (`wix_cluster.*`) go, with the
    /// worker process they came from, as its channel names it (no subscriber of the
    /// app ever sees them). Set once.
    pub(crate) fn intercept(&self, topic: &'static str, sink: Sink) {
        let mut state = self.state();
        state.sinks.retain(|(known, _)| *known != topic);
        state.sinks.push((topic, sink));
    }

    /// Like [`Hub::deliver`], for a message read from the channel of worker process
    /// `key`: a subscriber whose budget is spent is waited for (up to
    /// [`BUDGET_WAIT`]), so that the worker's channel is read no faster than the
    /// master's subscribers keep up. A reserved topic goes to its sink, if any, or
    /// nowhere.
    pub(crate) async fn deliver_from_worker(
        &self,
        key: WorkerKey,
        topic: &str,
        payload: Arc<[u8]>,
    ) {
        if topic.starts_with(super::RESERVED_PREFIX) {
            let sink = self
                .state()
                .sinks
                .iter()
                .find(|(known, _)| *known == topic)
                .map(|(_, sink)| sink.clone());
            match sink {
                Some(sink) => sink(key, &payload),
                None => tracing::debug!(
                    "dropping a message on the reserved topic {topic:?} from worker {}",
                    key.id
                ),
            }
            return;
        }
        let from = Peer::Worker(key.id);
        let subscribers = match self.state().subscribers.get(topic) {
            Some(subscribers) => subscribers.clone(),
            None => return,
        };
        let cost = cost(&payload);
        for subscriber in subscribers {
            let permit = if subscriber.overflowing.load(Ordering::Relaxed) {
                subscriber.budget.clone().try_acquire_many_owned(cost).ok()
            } else {
                let permit = subscriber.budget.clone().acquire_many_owned(cost);
                tokio::time::timeout(BUDGET_WAIT, permit)
                    .await
                    .ok()
                    .and_then(Result::ok)
            };
            subscriber
                .overflowing
                .store(permit.is_none(), Ordering::Relaxed);
            match permit {
                Some(permit) => {
                    let _ = subscriber.tx.send(Envelope {
                        from,
                        payload: payload.clone(),
                        _budget: permit,
                    });
                }
                None => self.count_dropped(topic),
            }
        }
        self.state()
            .subscribers
            .entry(topic.to_owned())
            .or_default()
            .retain(|subscriber| !subscriber.tx.is_closed());
    }

    /// Hands a message to this process's subscribers of `topic`.
    pub(crate) fn deliver(&self, from: Peer, topic: &str, payload: Arc<[u8]>) {
        let mut dropped = 0;
        let mut state = self.state();
        if let Some(subscribers) = state.subscribers.get_mut(topic) {
            let cost = cost(&payload);
            subscribers.retain(|subscriber| {
                let Ok(permit) = subscriber.budget.clone().try_acquire_many_owned(cost) else {
                    dropped += 1;
                    return !subscriber.tx.is_closed();
                };
                let envelope = Envelope {
                    from,
                    payload: payload.clone(),
                    _budget: permit,
                };
                subscriber.tx.send(envelope).is_ok()
            });
        }
        drop(state);
        for _ in 0..dropped {
            self.count_dropped(topic);
        }
    }

    /// Worker: sends a message to the master.
    pub(crate) fn send_to_master(&self, topic: &str, payload: &[u8]) -> Result<(), ExchangeError> {
        super::check_size("message", payload.len(), super::MAX_MESSAGE_BYTES)?;
        match &self.side {
            Side::Worker(out) => match out.send(&ExchangeRef::to_master(topic, payload)) {
                Ok(()) => {}
                // The master has not read what this worker sent: the caller hears it.
                Err(FrameError::Backlog { queued }) => {
                    return Err(ExchangeError::Backlog { queued });
                }
                Err(e) => {
                    tracing::error!("cannot send a message on topic {topic:?} to the master: {e}");
                }
            },
            Side::Master => self.deliver(Peer::Master, topic, payload.into()),
            Side::Single => self.deliver(Peer::Worker(WorkerId(0)), topic, payload.into()),
        }
        Ok(())
    }

    /// Master: sends to every worker, and to the master's own subscribers. A worker
    /// whose channel has no room for it misses it: the caller hears
    /// [`ExchangeError::Backlog`] (the others and the master's subscribers have it),
    /// and it is counted ([`REFUSED_TOTAL`]).
    pub(crate) fn broadcast(&self, topic: &str, payload: Vec<u8>) -> Result<(), ExchangeError> {
        if let Side::Worker(_) = self.side {
            return Err(ExchangeError::MasterOnly { what: "broadcast" });
        }
        super::check_size("message", payload.len(), super::MAX_MESSAGE_BYTES)?;
        let mut refused = None;
        // Encoded once, for every worker.
        if let Some(frame) = encode_to_worker(&ExchangeRef::to_worker(topic, &payload)) {
            for (key, link) in &self.state().workers {
                if let Err(FrameError::Backlog { queued }) = link.out.send_encoded(&frame) {
                    self.count_refused(topic, *key, queued);
                    refused = refused.max(Some(queued));
                }
            }
        }
        self.deliver(Peer::Master, topic, payload.into());
        match refused {
            Some(queued) => Err(ExchangeError::Backlog { queued }),
            None => Ok(()),
        }
    }

    /// Broadcasts and `send_to`s refused since start because a worker's channel was
    /// full.
    pub(crate) fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    fn count_refused(&self, topic: &str, key: WorkerKey, queued: usize) {
        let refused = self.refused.fetch_add(1, Ordering::Relaxed) + 1;
        ::metrics::counter!(REFUSED_TOTAL).increment(1);
        // The 1st, 2nd, 4th, 8th... is logged: a flood costs a few lines.
        if refused.is_power_of_two() {
            tracing::warn!(
                "a message on topic {topic:?} was not sent to worker {} (generation {}): \
                 {queued} bytes wait unread on its channel ({refused} refused so far)",
                key.id,
                key.generation
            );
        }
    }

    /// Master: sends to worker `id` only.
    pub(crate) fn send_to_worker(
        &self,
        id: WorkerId,
        topic: &str,
        payload: Vec<u8>,
    ) -> Result<(), ExchangeError> {
        super::check_size("message", payload.len(), super::MAX_MESSAGE_BYTES)?;
        match self.side {
            Side::Worker(_) => Err(ExchangeError::MasterOnly { what: "send_to" }),
            Side::Single if id == WorkerId(0) => {
                self.deliver(Peer::Master, topic, payload.into());
                Ok(())
            }
            Side::Single => Err(ExchangeError::UnknownWorker(id)),
            Side::Master => {
                let state = self.state();
                let (key, link) = state
                    .workers
                    .range(WorkerKey::all_of(id))
                    .next_back()
                    .ok_or(ExchangeError::UnknownWorker(id))?;
                let msg = ExchangeRef::to_worker(topic, &payload);
                match link.out.send(&msg) {
                    Ok(()) => Ok(()),
                    Err(FrameError::Backlog { queued }) => {
                        self.count_refused(topic, *key, queued);
                        Err(ExchangeError::Backlog { queued })
                    }
                    Err(e) => {
                        tracing::error!(
                            "cannot send a message on topic {topic:?} to worker {id}: {e}"
                        );
                        Ok(())
                    }
                }
            }
        }
    }

    /// Registers the handler for requests on `topic`.
    pub(crate) fn handle(
        &self,
        topic: &'static str,
        handler: Handler,
    ) -> Result<(), ExchangeError> {
        if let Side::Worker(_) = self.side {
            return Err(ExchangeError::MasterOnly { what: "handle" });
        }
        let mut state = self.state();
        if state.handlers.contains_key(topic) {
            return Err(ExchangeError::HandlerExists { topic });
        }
        state.handlers.insert(topic.to_owned(), handler);
        Ok(())
    }

    /// Sends a request and waits for the encoded answer (no timeout here).
    pub(crate) async fn request(
        &self,
        topic: &str,
        payload: Vec<u8>,
        timeout: std::time::Duration,
    ) -> Result<Vec<u8>, ExchangeError> {
        let handler_error = |message: String| ExchangeError::Handler {
            topic: topic.to_owned(),
            message,
        };
        super::check_size("message", payload.len(), super::MAX_MESSAGE_BYTES)?;
        match &self.side {
            Side::Worker(out) => {
                // Forgotten if the caller stops waiting (timeout, drop).
                let pending = self.requests.open();
                let msg = ToMaster::Request {
                    id: pending.id(),
                    topic: topic.to_owned(),
                    payload,
                    timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
                };
                if let Err(e) = out.send(&msg) {
                    tracing::error!("cannot send a {} message to the master: {e}", msg.kind());
                }
                pending
                    .answer()
                    .await
                    .ok_or(ExchangeError::Closed)?
                    .map_err(handler_error)
            }
            Side::Master | Side::Single => {
                let from = match self.side {
                    Side::Single => Peer::Worker(WorkerId(0)),
                    _ => Peer::Master,
                };
                let handler = self.state().handlers.get(topic).cloned();
                let handler =
                    handler.ok_or_else(|| handler_error("no handler is registered".into()))?;
                handler(from, payload).await.map_err(handler_error)
            }
        }
    }

    /// Worker: the master answered request `id`.
    pub(crate) fn complete(&self, id: u64, result: Result<Vec<u8>, String>) {
        // Nobody waits any more: the caller gave up (timed out) before it came.
        let _ = self.requests.complete(id, result);
    }

    /// Master: a worker's request; the handler runs in its own task, within `requests`
    /// (that worker's), and the answer goes back on `reply`, that worker's channel. It
    /// is given up when the worker gives up on it (`timeout`) or goes away.
    pub(crate) fn on_request(
        &'static self,
        request: WorkerRequest,
        requests: &RequestScope,
        reply: Outbox,
    ) {
        let WorkerRequest {
            from,
            id,
            topic,
            payload,
            timeout,
        } = request;
        let Some(guard) = requests.enter() else {
            let result = Err(format!(
                "worker {from} has {MAX_REQUESTS_IN_FLIGHT} requests in flight already"
            ));
            if let Err(e) = reply.send(&ToWorker::Response { id, result }) {
                tracing::debug!("cannot answer worker {from}'s request on {topic:?}: {e}");
            }
            return;
        };
        let mut gone = requests.gone();
        let handler = self.state().handlers.get(&topic).cloned();
        tokio::spawn(async move {
            let _guard = guard;
            let answer = async {
                match handler {
                    Some(handler) => handler(Peer::Worker(from), payload).await,
                    None => Err(format!("the master has no handler for topic {topic:?}")),
                }
            };
            let result = tokio::select! {
                result = answer => result,
                () = tokio::time::sleep(timeout) => return,
                _ = gone.changed() => return,
            };
            let result = result.and_then(|answer| {
                super::check_size("answer", answer.len(), super::MAX_MESSAGE_BYTES)
                    .map(|()| answer)
                    .map_err(|e| e.to_string())
            });
            let result = result.map(serde_bytes::ByteBuf::from);
            if let Err(e) = reply.send(&ToWorker::Response { id, result }) {
                tracing::error!("cannot answer worker {from}'s request on {topic:?}: {e}");
            }
        });
    }

    /// Master: a worker completed its handshake. `welcome` is called with the current
    /// app-scoped data while no publish can interleave, so the worker misses nothing.
    pub(crate) fn attach_worker(
        &self,
        key: WorkerKey,
        out: Outbox,
        welcome: impl FnOnce(Vec<(String, serde_bytes::ByteBuf)>),
    ) {
        let mut state = self.state();
        let data = state
            .data
            .iter()
            .map(|(topic, cell)| {
                (
                    topic.clone(),
                    serde_bytes::ByteBuf::from(cell.bytes.to_vec()),
                )
            })
            .collect();
        welcome(data);
        state.workers.insert(
            key,
            Link {
                out,
                stale: BTreeSet::new(),
            },
        );
    }

    /// Master: a worker process ended.
    pub(crate) fn detach_worker(&self, key: WorkerKey) {
        self.state().workers.remove(&key);
    }

    /// Whether `len` bytes of app data on `topic` (replacing its current value) keep
    /// the total within [`super::MAX_APP_DATA_BYTES`].
    pub(crate) fn check_data_room(&self, topic: &str, len: usize) -> Result<(), ExchangeError> {
        let others: usize = self
            .state()
            .data
            .iter()
            .filter(|(known, _)| known.as_str() != topic)
            .map(|(_, cell)| cell.bytes.len())
            .sum();
        super::check_size("app data", others + len, super::MAX_APP_DATA_BYTES)
    }

    /// Sets the app-scoped data of `topic` (in this process; the master also sends it
    /// to every worker).
    pub(crate) fn set_data(
        &self,
        topic: &str,
        bytes: Vec<u8>,
        decoded: Option<Arc<dyn Any + Send + Sync>>,
    ) {
        let mut state = self.state();
        let bytes: Arc<[u8]> = bytes.into();
        if let Side::Master = self.side {
            let msg = ExchangeRef::data(topic, &bytes);
            let frame = encode_to_worker(&msg);
            for (key, link) in &mut state.workers {
                // Behind a value still waiting for room, or with no room itself: the
                // worker gets the newest value once it has read what is queued.
                let sent = link.stale.is_empty()
                    && frame
                        .as_ref()
                        .is_some_and(|frame| link.out.send_encoded(frame).is_ok());
                if !sent && link.stale.is_empty() {
                    self.spawn_catch_up(*key, link.out.clone());
                }
                if !sent {
                    link.stale.insert(topic.to_owned());
                }
            }
        }
        state
            .data
            .insert(topic.to_owned(), DataCell { bytes, decoded });
        state
            .data_versions
            .entry(topic.to_owned())
            .or_insert_with(|| watch::channel(0).0)
            .send_modify(|version| *version += 1);
    }

    /// Starts [`Hub::catch_up`] for worker `key` (on the runtime this is called from;
    /// without one, on a thread of its own).
    fn spawn_catch_up(&self, key: WorkerKey, out: Outbox) {
        let Ok(hub) = hub() else {
            return;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(hub.catch_up(key, out));
            }
            Err(_) => {
                tracing::error!(
                    "app data published outside the master's runtime cannot wait for worker \
                     {} to read its channel",
                    key.id
                );
            }
        }
    }

    /// Master: waits until worker `key` has read everything queued for it, then sends
    /// the current value of each topic it missed; again while some still do not fit.
    /// Ends when none is missing or the worker is gone.
    async fn catch_up(&'static self, key: WorkerKey, out: Outbox) {
        loop {
            out.flush().await;
            // The first topic still missing, and its current value.
            let next = {
                let mut state = self.state();
                let State { workers, data, .. } = &mut *state;
                let Some(link) = workers.get_mut(&key) else {
                    return;
                };
                loop {
                    let Some(topic) = link.stale.first().cloned() else {
                        return;
                    };
                    match data.get(&topic) {
                        Some(cell) => break (topic, cell.bytes.clone()),
                        None => {
                            link.stale.remove(&topic);
                        }
                    }
                }
            };
            // Encoded off the runtime: a large value takes a while.
            let (topic, bytes) = next.clone();
            let frame = tokio::task::spawn_blocking(move || {
                encode_to_worker(&ExchangeRef::data(&topic, &bytes))
            })
            .await
            .ok()
            .flatten();
            let (topic, bytes) = next;
            let mut state = self.state();
            let State { workers, data, .. } = &mut *state;
            let Some(link) = workers.get_mut(&key) else {
                return;
            };
            let current = data
                .get(&topic)
                .is_some_and(|cell| Arc::ptr_eq(&cell.bytes, &bytes));
            if !current {
                // A newer value came meanwhile: that one goes, next round.
                continue;
            }
            match frame.map(|frame| link.out.send_encoded(&frame)) {
                Some(Err(FrameError::Backlog { .. })) => {
                    tracing::debug!(
                        "worker {} has no room for the app data on {topic:?} yet",
                        key.id
                    );
                }
                _ => {
                    link.stale.remove(&topic);
                    if link.stale.is_empty() {
                        return;
                    }
                }
            }
        }
    }

    /// The current data of `topic`, decoded with `decode` unless already decoded as the
    /// type `decode` produces.
    pub(crate) fn data<T: Send + Sync + 'static>(
        &self,
        topic: &str,
        decode: impl FnOnce(&[u8]) -> Option<T>,
    ) -> Option<Arc<T>> {
        let mut state = self.state();
        let cell = state.data.get_mut(topic)?;
        if let Some(decoded) = cell
            .decoded
            .clone()
            .and_then(|any| any.downcast::<T>().ok())
        {
            return Some(decoded);
        }
        let value = Arc::new(decode(&cell.bytes)?);
        cell.decoded = Some(value.clone());
        Some(value)
    }

    /// A receiver that changes whenever `topic`'s data does.
    pub(crate) fn watch_data(&self, topic: &str) -> watch::Receiver<u64> {
        self.state()
            .data_versions
            .entry(topic.to_owned())
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_has_at_most_256_requests_in_the_masters_hands() {
        let scope = RequestScope::default();
        let mut held: Vec<InFlight> = (0..MAX_REQUESTS_IN_FLIGHT)
            .map(|n| {
                scope
                    .enter()
                    .unwrap_or_else(|| panic!("request {n} refused"))
            })
            .collect();
        assert!(scope.enter().is_none(), "a 257th request was taken");
        // One answered: its place, and only it, is free again.
        drop(held.pop());
        let again = scope.enter();
        assert!(again.is_some(), "a freed place was not given back");
        assert!(scope.enter().is_none(), "more than one place came back");
        assert_eq!(held.len() + 1, MAX_REQUESTS_IN_FLIGHT);
    }
}
