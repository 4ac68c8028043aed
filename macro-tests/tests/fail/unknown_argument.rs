#[wix_cluster::main(threads = 4)]
async fn main(worker: wix_cluster::Worker) -> std::io::Result<()> {
    let _ = worker;
    Ok(())
}
