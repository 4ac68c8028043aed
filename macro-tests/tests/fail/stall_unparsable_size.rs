#[wix_cluster::main(plugins(Stall(max_rss = "512 megs")))]
async fn main(worker: wix_cluster::Worker) -> std::io::Result<()> {
    let _ = worker;
    Ok(())
}
