#[wix_cluster::main(management = "localhost:8084")]
async fn main(worker: wix_cluster::Worker) {
    let _ = worker;
}
