//! A test fixture: a worker that forges the metrics batches wix-cluster's workers send
//! the master, bypassing its recorder, and a master-side plugin that tries to subscribe
//! to them with a type of its own.
//!
//! `/forge?batches=N` sends N batches on `wix_cluster.metrics`, each claiming another
//! generation and carrying 1000 series of long (but valid) names and labels, one
//! series with a 10,000-byte name, one with 20 labels, a histogram of 10,000 bounds
//! and a description of 10,000 bytes; it answers `sent=<n> refused=<n>`. At start, the
//! master's plugin logs `subscribing to the metrics topic: <the result>`.

use axum::extract::Query;
use axum::{Router, routing::get};
use wix_cluster::metrics::{Buckets, Reading, SeriesKey};
use wix_cluster::{Master, Plugin, PluginError};

/// The shape of a batch on the wire (postcard is positional: the field names do not
/// matter, their order does).
#[derive(serde::Serialize, serde::Deserialize)]
struct Forged {
    generation: u32,
    series: Vec<(SeriesKey, Reading)>,
    descriptions: Vec<(String, String)>,
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
    let mut series: Vec<(SeriesKey, Reading)> = (0..1000)
        .map(|j| {
            let name = format!("forged_{generation}_{j}_{}", "n".repeat(170));
            let labels = (0..8)
                .map(|k| (format!("label{k}"), value.clone()))
                .collect();
            (SeriesKey::new(name, labels), Reading::Counter(1))
        })
        .collect();
    series.push((
        SeriesKey::new(format!("forged_long_{}", "x".repeat(10_000)), vec![]),
        Reading::Counter(1),
    ));
    series.push((
        SeriesKey::new(
            "forged_many_labels",
            (0..20).map(|k| (format!("l{k}"), "v".to_owned())).collect(),
        ),
        Reading::Counter(1),
    ));
    let bounds: Vec<f64> = (0..10_000).map(f64::from).collect();
    series.push((
        SeriesKey::new("forged_wide_histogram", vec![]),
        Reading::Histogram(Buckets {
            counts: vec![1; bounds.len() + 1],
            bounds,
            sum: 1.0,
        }),
    ));
    Forged {
        generation,
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
