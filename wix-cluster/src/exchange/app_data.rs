//! [`AppData`]: a value the master publishes and every worker holds, current before the
//! worker's app starts.

use std::marker::PhantomData;
use std::sync::Arc;

use super::hub::hub;
use super::{Exchange, ExchangeError};

/// App-scoped data of type `T` (any `#[wix_cluster::exchange("name")]` type; its topic
/// names the data).
///
/// The master publishes a value — typically a plugin's `on_master` loads it first, so
/// that it is there before any worker starts — and may publish a new one at any time.
/// Every worker has the current value before its app runs (it comes with the
/// handshake), and gets each new one; a worker whose channel has no room yet gets the
/// newest once it has read the rest (values in between may be skipped, the newest
/// never). Values are decoded once per process.
///
/// ```no_run
/// use wix_cluster::AppData;
///
/// #[wix_cluster::exchange("prices")]
/// struct Prices { euro_cents: Vec<u64> }
///
/// # async fn app() -> Result<(), wix_cluster::ExchangeError> {
/// // master (a plugin's on_master, or a task it spawned):
/// AppData::publish(&Prices { euro_cents: vec![100, 250] })?;
/// // worker:
/// let prices = AppData::<Prices>::get()?.expect("published before workers start");
/// let newer = AppData::<Prices>::changed().await?;
/// # Ok(()) }
/// ```
pub struct AppData<T>(PhantomData<fn() -> T>);

impl<T: Exchange + Sync> AppData<T> {
    /// Publishes `value` as the current data (master, or single-process mode).
    pub fn publish(value: &T) -> Result<(), ExchangeError> {
        let hub = hub()?;
        if let super::hub::Side::Worker(_) = hub.side() {
            return Err(ExchangeError::MasterOnly {
                what: "AppData::publish",
            });
        }
        super::check_topic(T::TOPIC)?;
        hub.claim::<AppData<T>>(T::TOPIC)?;
        let bytes = super::encode(value)?;
        hub.check_data_room(T::TOPIC, bytes.len())?;
        hub.set_data(T::TOPIC, bytes, None);
        Ok(())
    }

    /// The current value; `None` if nothing was published yet.
    pub fn get() -> Result<Option<Arc<T>>, ExchangeError> {
        let hub = hub()?;
        super::check_topic(T::TOPIC)?;
        hub.claim::<AppData<T>>(T::TOPIC)?;
        Ok(
            hub.data(T::TOPIC, |bytes| match postcard::from_bytes::<T>(bytes) {
                Ok(value) => Some(value),
                Err(e) => {
                    hub.count_undecodable(T::TOPIC, std::any::type_name::<T>(), &e);
                    None
                }
            }),
        )
    }

    /// Waits for the next value published after this call, and returns it.
    pub async fn changed() -> Result<Arc<T>, ExchangeError> {
        let hub = hub()?;
        super::check_topic(T::TOPIC)?;
        hub.claim::<AppData<T>>(T::TOPIC)?;
        let mut versions = hub.watch_data(T::TOPIC);
        versions.borrow_and_update();
        loop {
            versions
                .changed()
                .await
                .map_err(|_| ExchangeError::Closed)?;
            if let Some(value) = Self::get()? {
                return Ok(value);
            }
        }
    }

    /// The current value, waiting for the first one if nothing was published yet.
    pub async fn wait() -> Result<Arc<T>, ExchangeError> {
        let hub = hub()?;
        super::check_topic(T::TOPIC)?;
        hub.claim::<AppData<T>>(T::TOPIC)?;
        let mut versions = hub.watch_data(T::TOPIC);
        loop {
            if let Some(value) = Self::get()? {
                return Ok(value);
            }
            versions
                .changed()
                .await
                .map_err(|_| ExchangeError::Closed)?;
        }
    }
}
