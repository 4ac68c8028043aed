#[wix_cluster::exchange("orders", reply = u64)]
struct Order {
    id: u64,
}

fn main() {}
