#[wix_cluster::main(flavor = "current_thread", worker_threads = 4)]
async fn main(worker: wix_cluster::Worker) -> std::io::Result<()> {
    let _ = worker;
    Ok(())
}
