#[wix_cluster::main(body_read_timeout = "0s")]
async fn main(worker: wix_cluster::Worker) {
    let _ = worker;
}
