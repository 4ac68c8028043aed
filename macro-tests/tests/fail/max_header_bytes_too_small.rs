#[wix_cluster::main(max_header_bytes = "1KiB")]
async fn main(worker: wix_cluster::Worker) {
    let _ = worker;
}
