#[wix_cluster::main]
async fn main(w: wix_cluster::Worker) -> std::io::Result<()> {
    let _ = w;
    Ok(())
}
