#[wix_cluster::exchange(orders)]
struct Order {
    id: u64,
}

fn main() {}
