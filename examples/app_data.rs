//! App data from the master: the master loads a table when it starts and refreshes it every
//! `REFRESH_MS` (default 5000); every worker has the current table before its app runs
//! and answers from its own copy.
//!
//!     cargo run --example app_data      # then: curl localhost:8080/price/apple
//!
//! Each refresh raises every price by one cent, so the answers show the data moving.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::Path;
use axum::{Router, routing::get};
use wix_cluster::{AppData, Master, Plugin, PluginError};

#[wix_cluster::exchange("prices")]
struct Prices {
    version: u64,
    cents: BTreeMap<String, u64>,
}

/// Loads the table in the master, before any worker starts, then refreshes it.
#[derive(Default)]
struct PriceTable;

fn load(version: u64) -> Prices {
    let cents = [("apple", 50), ("bread", 250), ("coffee", 400)]
        .into_iter()
        .map(|(item, cents)| (item.to_owned(), cents + version))
        .collect();
    Prices { version, cents }
}

impl Plugin for PriceTable {
    fn name(&self) -> &str {
        "PriceTable"
    }

    async fn on_master(&self, _master: &Master) -> Result<(), PluginError> {
        AppData::publish(&load(0))?;
        let every = std::env::var("REFRESH_MS")
            .ok()
            .and_then(|ms| ms.parse().ok())
            .map_or(Duration::from_secs(5), Duration::from_millis);
        tokio::spawn(async move {
            for version in 1.. {
                tokio::time::sleep(every).await;
                match AppData::publish(&load(version)) {
                    Ok(()) => tracing::info!("prices refreshed (version {version})"),
                    Err(e) => tracing::error!("cannot publish prices: {e}"),
                }
            }
        });
        Ok(())
    }
}

#[wix_cluster::main(workers = 2, plugins(PriceTable, Respawn, Graceful))]
async fn main(worker: wix_cluster::Worker) -> std::io::Result<()> {
    let port = std::env::var("PORT").unwrap_or_else(|_| "8080".to_owned());
    let listener = worker.listen(format!("127.0.0.1:{port}")).await?;
    let app = Router::new().route(
        "/price/{item}",
        get(|Path(item): Path<String>| async move {
            match AppData::<Prices>::get() {
                Ok(Some(prices)) => match prices.cents.get(&item) {
                    Some(cents) => format!("{item}: {cents} cents (version {})", prices.version),
                    None => format!("no price for {item}"),
                },
                Ok(None) => "no prices yet".to_owned(),
                Err(e) => format!("error: {e}"),
            }
        }),
    );
    wix_cluster::http::serve(listener, app, &worker).await
}
