// The spelling of the Stall plugin's settings compiles as written.
#[wix_cluster::main(plugins(
    Respawn,
    Stall(
        timeout = "10s",
        cpu_percent = 90,
        cpu_for = "30s",
        max_rss = "512MiB",
        max_requests = 10000,
        max_requests_jitter = 500
    )
))]
async fn main(worker: wix_cluster::Worker) -> std::io::Result<()> {
    let _ = worker;
    Ok(())
}
