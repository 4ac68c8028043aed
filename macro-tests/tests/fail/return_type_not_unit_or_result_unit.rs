#[wix_cluster::main]
async fn main(worker: wix_cluster::Worker) -> Result<u16, String> {
    let _ = worker;
    Ok(8080)
}
