#[wix_cluster::exchange(" ")]
struct Order {
    id: u64,
}

fn main() {}
