fn admin_pages() -> axum::Router {
    axum::Router::new()
}

#[wix_cluster::main(management_page = admin_pages())]
async fn main(worker: wix_cluster::Worker) {
    let _ = worker;
}
