#[wix_cluster::exchange("orders", response = u64, response = String)]
struct Order {
    id: u64,
}

fn main() {}
