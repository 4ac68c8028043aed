#[wix_cluster::main(workers = 3, without(Respwn))]
async fn main(worker: wix_cluster::Worker) -> std::io::Result<()> {
    let _ = worker;
    Ok(())
}
