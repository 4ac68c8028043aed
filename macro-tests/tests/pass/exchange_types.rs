// `#[wix_cluster::exchange]` on a struct and on an enum, with and without a response
// type, public or not; in single-process mode a request reaches the handler in the same
// process.
use wix_cluster::Exchange;

#[wix_cluster::exchange("orders")]
pub struct Order {
    id: u64,
}

#[wix_cluster::exchange("prices", response = Option<u64>,)]
enum PriceOf {
    Item(String),
    Nothing,
}

#[wix_cluster::main(workers = 1)]
async fn main(worker: wix_cluster::Worker) -> std::io::Result<()> {
    assert_eq!(Order::TOPIC, "orders");
    assert_eq!(<PriceOf as Exchange>::TOPIC, "prices");
    let _orders = Order::subscribe().map_err(std::io::Error::other)?;
    Order { id: 1 }.send().map_err(std::io::Error::other)?;
    PriceOf::handle(|_from, query| async move {
        match query {
            PriceOf::Item(name) => Some(name.len() as u64),
            PriceOf::Nothing => None,
        }
    })
    .map_err(std::io::Error::other)?;
    let price = PriceOf::request(PriceOf::Item("tea".into()))
        .await
        .map_err(std::io::Error::other)?;
    assert_eq!(price, Some(3));
    let _ = worker;
    Ok(())
}
