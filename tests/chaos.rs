//! A bounded chaos run: continuous load while kill -9 of random workers, SIGHUP,
//! SIGTTIN/SIGTTOU and one SIGUSR2 arrive about every second. Failed requests stay
//! within the in-flight share of the killed workers, the master's memory and
//! descriptors stay bounded, no zombie is left, and the worker count ends where the
//! signals put it.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use wix_cluster_suite::{
    Load, PATIENCE, Program, children_of, open_fds, rss_bytes, send_signal, wait_until, zombies_of,
};

/// How long the signals keep coming.
const CHAOS: Duration = Duration::from_secs(40);
/// Client threads of the load (each has at most one request in flight).
const CLIENTS: usize = 4;

/// A small xorshift generator: the run differs each time, and prints its seed.
struct Dice(u64);

impl Dice {
    fn roll(&mut self, sides: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % sides
    }
}

#[test]
fn chaos_under_load_loses_only_the_killed_workers_requests_and_ends_where_the_signals_put_it() {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1;
    eprintln!("chaos seed {seed}");
    let mut dice = Dice(seed);
    let program = Program::start(
        "hello",
        &[
            ("HOST", "127.0.0.1"),
            ("PORT", "0"),
            ("WIX_CLUSTER_WORKERS", "3"),
        ],
    );
    let mut master = program.pid();
    let mut desired = 3usize;
    program.wait_for_workers(3);
    let addr = program.listening_addr();
    program.wait_for_200(addr, "/");
    let load = Load::start(addr, CLIENTS, "/");

    let started = Instant::now();
    let mut kills = 0usize;
    let mut upgraded = false;
    let mut baseline: Option<(u64, usize)> = None;
    while started.elapsed() < CHAOS {
        std::thread::sleep(Duration::from_millis(800 + dice.roll(400)));
        if !upgraded && started.elapsed() > Duration::from_secs(8) {
            // One master upgrade; nothing else is sent until it is over.
            send_signal(master, Signal::SIGUSR2);
            let new = program.new_master_pid();
            let old = master;
            let gone = wait_until(PATIENCE, || !wix_cluster_suite::is_alive(old));
            assert!(gone, "the old master did not exit");
            master = new;
            upgraded = true;
            continue;
        }
        if upgraded && baseline.is_none() && started.elapsed() > Duration::from_secs(14) {
            baseline = Some((rss_bytes(master), open_fds(master)));
        }
        match dice.roll(6) {
            0..=2 => {
                let workers = children_of(master);
                if !workers.is_empty() {
                    let victim = workers[dice.roll(workers.len() as u64) as usize];
                    send_signal(victim, Signal::SIGKILL);
                    kills += 1;
                }
            }
            3 => send_signal(master, Signal::SIGHUP),
            4 if desired < 6 => {
                send_signal(master, Signal::SIGTTIN);
                desired += 1;
            }
            _ if desired > 2 => {
                send_signal(master, Signal::SIGTTOU);
                desired -= 1;
            }
            _ => {
                send_signal(master, Signal::SIGTTIN);
                desired += 1;
            }
        }
    }

    // The cluster settles where the signals put it.
    let mut workers = Vec::new();
    let settled = wait_until(PATIENCE, || {
        workers = children_of(master);
        workers.len() == desired
    });
    std::thread::sleep(Duration::from_millis(500));
    let report = load.stop();
    assert!(
        settled,
        "expected {desired} workers, have {workers:?} (seed {seed})"
    );
    assert!(upgraded, "the upgrade never ran");
    assert!(report.ok > 500, "too little load went through: {report}");
    assert!(
        report.failed.len() <= kills * CLIENTS,
        "{} requests failed for {kills} kills of workers (at most {CLIENTS} in flight each): \
         {report} (seed {seed})",
        report.failed.len()
    );
    let zombies = zombies_of(master);
    assert!(zombies.is_empty(), "zombies {zombies:?} (seed {seed})");

    // Bounded: the master's memory and descriptors at the end are what they were a
    // while after the upgrade, give or take the workers' channels.
    let (rss_before, fds_before) = baseline.expect("a baseline after the upgrade");
    let (rss_after, fds_after) = (rss_bytes(master), open_fds(master));
    eprintln!(
        "master rss {rss_before} -> {rss_after} bytes, fds {fds_before} -> {fds_after}, \
         {kills} kills, {report}"
    );
    assert!(
        rss_after < rss_before * 2 + (8 << 20),
        "master RSS grew from {rss_before} to {rss_after} bytes (seed {seed})"
    );
    assert!(
        fds_after <= fds_before + 4 * 6,
        "master descriptors grew from {fds_before} to {fds_after} (seed {seed})"
    );
}
