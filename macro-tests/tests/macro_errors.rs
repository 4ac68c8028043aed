//! `#[wix_cluster::main]` and `#[wix_cluster::exchange]` misuse is a compile error pointing
//! at the mistake (`tests/fail/*.rs`, the exchange cases named `exchange_*`, with the
//! expected errors in the `.stderr` next to each).
//!
//! After changing an error, regenerate the snapshots with
//! `TRYBUILD=overwrite cargo test --test macro_errors` and read every changed `.stderr`.

#[test]
fn macro_misuse_is_a_spanned_compile_error() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/fail/*.rs");
}
