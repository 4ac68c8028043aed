fn admin_pages() -> axum::Router {
    axum::Router::new().route("/custom", axum::routing::get(|| async { "custom" }))
}

mod pages {
    pub fn more() -> axum::Router {
        axum::Router::new()
    }
}

#[wix_cluster::main(workers = 2, management = "127.0.0.1:0", management_page = admin_pages)]
async fn main(worker: wix_cluster::Worker) {
    let _ = worker;
    // A path to a function in another module works the same way.
    let _ = wix_cluster::ManagementApp::builder().page(pages::more());
}
