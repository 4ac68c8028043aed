fn admin_pages() -> String {
    "not a router".to_owned()
}

#[wix_cluster::main(management_page = admin_pages)]
async fn main(worker: wix_cluster::Worker) {
    let _ = worker;
}
