#[wix_cluster::main(plugins(Stall(timeout = "10s")), without(Stall))]
async fn main(worker: wix_cluster::Worker) -> std::io::Result<()> {
    let _ = worker;
    Ok(())
}
