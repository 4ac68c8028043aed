#[wix_cluster::main]
async fn main() -> std::io::Result<()> {
    Ok(())
}
