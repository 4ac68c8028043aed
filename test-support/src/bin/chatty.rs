//! A test fixture for logs: every worker writes `LINES` log lines through `tracing`
//! and `LINES` lines of its own to stdout, all at once, then serves like `hello`.
//! Under `WIX_CLUSTER_LOG_FORMAT=json` every line anyone writes is one JSON object.

#[wix_cluster::main(workers = 4)]
async fn main(worker: wix_cluster::Worker) -> std::io::Result<()> {
    let lines: usize = std::env::var("LINES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(500);
    let padding = "x".repeat(200);
    for line in 0..lines {
        tracing::info!(line, padding = %padding, "chatty worker {}", worker.id());
        // The app's own output: one JSON object per line too.
        println!(
            "{{\"app\":\"chatty\",\"worker\":{},\"line\":{line},\"padding\":\"{padding}\"}}",
            worker.id()
        );
    }
    let listener = worker.listen(("127.0.0.1", 0)).await?;
    let app = axum::Router::new().route("/", axum::routing::get(|| async { "Hi there" }));
    wix_cluster::http::serve(listener, app, &worker).await
}
