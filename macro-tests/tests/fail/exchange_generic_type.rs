#[wix_cluster::exchange("orders")]
struct Order<T> {
    id: T,
}

fn main() {}
