//! Valid uses of `#[wix_cluster::main]` and `#[wix_cluster::exchange]` compile and run
//! (`tests/pass/*.rs`).
//!
//! trybuild runs each case, so the cases run in single-process mode: `main` returns at
//! once and the program exits. (In master mode, workers that return at once would make
//! the master exit with a failure.) This is the only test in this binary, so that setting
//! the variable cannot race with another thread.

#[test]
fn valid_uses_compile_and_run() {
    // SAFETY: the only test of this binary, run before trybuild starts any thread; the
    // cases it runs inherit the variable.
    unsafe { std::env::set_var(wix_cluster::config::ENV_SINGLE, "1") };
    let t = trybuild::TestCases::new();
    t.pass("tests/pass/*.rs");
}
