// A plugin setting's string that starts like a number must be a duration or a size.
#[wix_cluster::main(plugins(Respawn(max_deaths = 5, within = "30x")))]
async fn main(worker: wix_cluster::Worker) -> std::io::Result<()> {
    let _ = worker;
    Ok(())
}
