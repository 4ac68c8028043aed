#[wix_cluster::main(flavor = "multi_threaded")]
async fn main(worker: wix_cluster::Worker) -> std::io::Result<()> {
    let _ = worker;
    Ok(())
}
