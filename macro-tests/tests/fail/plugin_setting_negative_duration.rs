#[wix_cluster::main(plugins(Graceful(timeout = "-5s")))]
async fn main(worker: wix_cluster::Worker) -> std::io::Result<()> {
    let _ = worker;
    Ok(())
}
