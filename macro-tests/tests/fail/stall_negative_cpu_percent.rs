#[wix_cluster::main(plugins(Stall(cpu_percent = -90)))]
async fn main(worker: wix_cluster::Worker) -> std::io::Result<()> {
    let _ = worker;
    Ok(())
}
