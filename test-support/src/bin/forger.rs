//! A test fixture: a worker that forges the declarations wix-cluster's workers send
//! the master (where each new series lies in the worker's metrics segment), bypassing
//! its recorder, and a master-side plugin that tries to subscribe to them with a type
//! of its own.
//!
//! `/forge?batches=N` sends N declarations on `wix_cluster.metrics`, each carrying 1000
//! counters of long (but valid) names and labels placed one after the other in the
//! segment (each batch starting again at the first cell), one series with a
//! 10,000-byte name, one with 20 labels, a histogram of 10,000 bounds, series placed
//! past the segment's end and over its header, and a description of 10,000 bytes; it
//! answers `sent=<n> refused=<n>`. At start, the master's plugin logs `subscribing to
//! the metrics topic: <the result>`.

use axum::extract::Query;
use axum::{Router, routing::get};
use wix_cluster::metrics::SeriesKey;
use wix_cluster::{Master, Plugin, PluginError};

/// The shape of a declaration on the wire (postcard is positional: the field names do
/// not matter, their order does).
#[derive(serde::Serialize, serde::Deserialize)]
struct Forged {
    series: Vec<Placed>,
    descriptions: Vec<(String, String)>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Placed {
    key: SeriesKey,
    kind: Kind,
    at: u32,
}

#[derive(serde::Serialize, serde::Deserialize)]
enum Kind {
    Counter,
    Gauge,
    Histogram { bounds: Vec<f64> },
}

/// An app type that claims the metrics topic anyway (the attribute refuses it, so it
/// implements the trait by hand).
impl wix_cluster::Exchange for Forged {
    const TOPIC: &'static str = "wix_cluster.metrics";
    type Response = ();
}

/// Tries to read the workers' metrics batches in the master.
#[derive(Default)]
struct Eavesdropper;

impl Plugin for Eavesdropper {
    fn name(&self) -> &str {
        "Eavesdropper"
    }

    async fn on_master(&self, _master: &Master) -> Result<(), PluginError> {
        match wix_cluster::exchange::subscribe::<Forged>() {
            Ok(_) => tracing::info!("subscribing to the metrics topic: subscribed"),
            Err(e) => tracing::info!("subscribing to the metrics topic: {e}"),
        }
        Ok(())
    }
}

fn forged(generation: u32) -> Forged {
    let value = "v".repeat(120);
    let placed = |key: SeriesKey, kind: Kind, at: u32| Placed { key, kind, at };
    let mut series: Vec<Placed> = (0..1000u32)
        .map(|j| {
            let name = format!("forged_{generation}_{j}_{}", "n".repeat(170));
            let labels = (0..8)
                .map(|k| (format!("label{k}"), value.clone()))
                .collect();
            placed(SeriesKey::new(name, labels), Kind::Counter, 2 + j)
        })
        .collect();
    series.push(placed(
        SeriesKey::new(format!("forged_long_{}", "x".repeat(10_000)), vec![]),
        Kind::Counter,
        5000,
    ));
    series.push(placed(
        SeriesKey::new(
            "forged_many_labels",
            (0..20).map(|k| (format!("l{k}"), "v".to_owned())).collect(),
        ),
        Kind::Gauge,
        5001,
    ));
    series.push(placed(
        SeriesKey::new("forged_wide_histogram", vec![]),
        Kind::Histogram {
            bounds: (0..10_000).map(f64::from).collect(),
        },
        6000,
    ));
    series.push(placed(
        SeriesKey::new("forged_past_the_end", vec![]),
        Kind::Counter,
        u32::MAX,
    ));
    series.push(placed(
        SeriesKey::new("forged_over_the_header", vec![]),
        Kind::Counter,
        0,
    ));
    Forged {
        series,
        descriptions: vec![("forged_described".to_owned(), "h".repeat(10_000))],
    }
}

#[derive(serde::Deserialize)]
struct Batches {
    batches: u32,
}

#[wix_cluster::main(workers = 1, plugins(Eavesdropper, Respawn, Graceful))]
async fn main(worker: wix_cluster::Worker) -> std::io::Result<()> {
    let port = std::env::var("PORT").unwrap_or_else(|_| "8080".to_owned());
    let listener = worker.listen(format!("127.0.0.1:{port}")).await?;
    let app = Router::new().route(
        "/forge",
        get(move |Query(q): Query<Batches>| async move {
            let (mut sent, mut refused) = (0, 0);
            for generation in 1000..1000 + q.batches {
                let Ok(payload) = postcard::to_allocvec(&forged(generation)) else {
                    continue;
                };
                // A full channel: wait for the master to read, and try again.
                loop {
                    match wix_cluster::__private::exchange::send_raw(
                        "wix_cluster.metrics",
                        payload.clone(),
                    ) {
                        Ok(()) => break,
                        Err(_) => {
                            refused += 1;
                            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                        }
                    }
                }
                sent += 1;
                tokio::task::yield_now().await;
            }
            format!("sent={sent} refused={refused}")
        }),
    );
    wix_cluster::http::serve(listener, app, &worker).await
}
