#[wix_cluster::main]
async fn serve(worker: wix_cluster::Worker) -> std::io::Result<()> {
    let _ = worker;
    Ok(())
}
