//! Nothing but a home for the compile tests of `#[wix_cluster::main]` and
//! `#[wix_cluster::exchange]` (`tests/`): trybuild builds the dependencies of the package
//! its cases belong to, so this package depends only on what the cases use.
