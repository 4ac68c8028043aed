// wix-cluster sends its metrics on "wix_cluster.metrics": no app type may take that
// topic, or any other under the prefix.
#[wix_cluster::exchange("wix_cluster.metrics")]
struct Forged {
    generation: u32,
}

fn main() {}
