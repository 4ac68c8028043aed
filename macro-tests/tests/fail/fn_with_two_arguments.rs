#[wix_cluster::main]
async fn main(worker: wix_cluster::Worker, port: u16) -> std::io::Result<()> {
    let _ = (worker, port);
    Ok(())
}
