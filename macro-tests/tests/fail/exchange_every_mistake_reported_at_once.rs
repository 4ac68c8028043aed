// An empty topic and a generic type, both reported in one compile.
#[wix_cluster::exchange("")]
struct Order<T> {
    id: T,
}

fn main() {}
