#[wix_cluster::exchange("orders")]
fn order() {}

fn main() {}
