//! `wix-cluster top`.

use std::time::Duration;

use crate::client::Client;
use crate::failure::Failure;

/// Runs the live view until `q`.
pub(crate) fn run(_client: Client, _interval: Duration) -> Result<(), Failure> {
    Ok(())
}
