#[wix_cluster::main(plugins(Respawn(nope = 1)))]
async fn main(worker: wix_cluster::Worker) -> std::io::Result<()> {
    let _ = worker;
    Ok(())
}
