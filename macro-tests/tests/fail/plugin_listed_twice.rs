#[wix_cluster::main(plugins(Respawn, Graceful, Respawn))]
async fn main(worker: wix_cluster::Worker) -> std::io::Result<()> {
    let _ = worker;
    Ok(())
}
