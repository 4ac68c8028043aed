//! Settings at their extremes: any value a user can type gives a clear start-up error
//! or a clamped value, never a panic.

use nix::sys::signal::Signal;
use wix_cluster_suite::{Program, http_get};

const U64_MAX: &str = "18446744073709551615";

#[test]
fn a_drain_timeout_of_duration_max_stops_cleanly() {
    let mut program = Program::start(
        "flaky",
        &[
            ("PORT", "0"),
            ("WIX_CLUSTER_WORKERS", "2"),
            ("DRAIN_TIMEOUT_MS", "forever"),
        ],
    );
    let addr = program.listening_addr();
    program.wait_for_workers(2);
    program.wait_for_200(addr, "/");
    program.signal(Signal::SIGTERM);
    program.assert_exits_with(0);
    assert!(!program.log().contains("panicked"));
}

#[test]
fn a_max_requests_jitter_of_u64_max_serves_without_panicking() {
    let program = Program::start_fixture(
        "runaway",
        &[
            ("PORT", "0"),
            ("WIX_CLUSTER_WORKERS", "2"),
            ("MAX_REQUESTS", "5"),
            ("MAX_REQUESTS_JITTER", U64_MAX),
        ],
    );
    let addr = program.listening_addr();
    let workers = program.wait_for_workers(2);
    for _ in 0..20 {
        let response = http_get(addr, "/").expect("served");
        assert_eq!(response.status, 200, "{response:?}");
    }
    assert!(!program.log().contains("panicked"));
    program.assert_workers_stay(&workers, "no worker was recycled or died");
}
