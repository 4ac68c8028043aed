// Items named like the ones the expansion uses must not change what it means.
#![allow(dead_code)]

mod core {}
mod std {}
mod wix_cluster_shadow {}
struct Cluster;
struct ExitCode;
struct Respawn;
enum Flavor {
    Other,
}
trait Default {}

/// Docs stay on the generated `main`; lints stay on the user's function.
#[wix_cluster::main(plugins(Respawn), flavor = "current_thread", single_process = "auto")]
#[allow(clippy::unused_async)]
async fn main(worker: wix_cluster::Worker) {
    let _ = worker;
}
