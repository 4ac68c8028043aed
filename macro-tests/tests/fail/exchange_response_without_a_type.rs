#[wix_cluster::exchange("orders", response)]
struct Order {
    id: u64,
}

fn main() {}
