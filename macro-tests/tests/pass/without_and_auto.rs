#[wix_cluster::main(workers = "auto", without(Respawn, Graceful, Stall))]
async fn main(worker: wix_cluster::Worker) -> std::io::Result<()> {
    let _ = worker;
    Ok(())
}
