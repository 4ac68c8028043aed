#[wix_cluster::main(workers = 2, workers = 4)]
async fn main(worker: wix_cluster::Worker) -> std::io::Result<()> {
    let _ = worker;
    Ok(())
}
