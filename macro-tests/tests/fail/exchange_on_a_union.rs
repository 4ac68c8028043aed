#[wix_cluster::exchange("orders")]
union Order {
    id: u64,
    price: f64,
}

fn main() {}
