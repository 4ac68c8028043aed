#[wix_cluster::main(plugins(Autoscale(min = 2, max = "lots")))]
async fn main(worker: wix_cluster::Worker) -> std::io::Result<()> {
    let _ = worker;
    Ok(())
}
