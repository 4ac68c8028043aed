//! systemd integration for real: sd_notify messages on a socket the test binds, and
//! socket activation through Debian's `systemd-socket-activate`.

use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use wix_cluster_suite::{PATIENCE, Program, example_path, http_get, is_alive, wait_until};

/// The watchdog timeout the tests give (`WATCHDOG_USEC`): the master pets every half of
/// it; systemd would kill a service whose pets are further apart than all of it. 2 s
/// leaves a 1 s margin over the pet interval on a busy machine.
const WATCHDOG_USEC: &str = "2000000";
const WATCHDOG: Duration = Duration::from_secs(2);

/// Collects what the master sends to `NOTIFY_SOCKET`, with when each arrived.
struct NotifySocket {
    path: std::path::PathBuf,
    messages: Arc<Mutex<Vec<(Instant, String)>>>,
}

impl NotifySocket {
    fn bind() -> NotifySocket {
        let path = std::env::temp_dir().join(format!(
            "wix-notify-{}-{:?}.sock",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_file(&path);
        let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
        let messages = Arc::new(Mutex::new(Vec::new()));
        let sink = messages.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = socket.recv(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                let received = (Instant::now(), text);
                sink.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(received);
            }
        });
        NotifySocket { path, messages }
    }

    fn messages(&self) -> Vec<String> {
        let messages = self.messages.lock().unwrap_or_else(|p| p.into_inner());
        messages.iter().map(|(_, text)| text.clone()).collect()
    }

    /// The longest time between two `WATCHDOG=1` pets, the first `skip` pets left out.
    fn longest_watchdog_gap(&self, skip: usize) -> Duration {
        let messages = self.messages.lock().unwrap_or_else(|p| p.into_inner());
        let pets: Vec<Instant> = messages
            .iter()
            .filter(|(_, text)| text.trim() == "WATCHDOG=1")
            .map(|(at, _)| *at)
            .skip(skip)
            .collect();
        pets.windows(2)
            .map(|pair| pair[1].duration_since(pair[0]))
            .max()
            .unwrap_or_default()
    }

    /// How many messages are exactly `message` (surrounding whitespace aside).
    fn count(&self, message: &str) -> usize {
        self.messages()
            .iter()
            .filter(|m| m.trim() == message)
            .count()
    }

    /// Waits for a message containing `needle`; returns its index.
    fn wait_for(&self, needle: &str) -> usize {
        let mut at = None;
        let ok = wait_until(PATIENCE, || {
            at = self.messages().iter().position(|m| m.contains(needle));
            at.is_some()
        });
        assert!(ok, "no notification with {needle:?}: {:?}", self.messages());
        at.unwrap_or_default()
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[test]
fn the_master_notifies_ready_reloading_watchdog_and_stopping_in_order() {
    let notify = NotifySocket::bind();
    let path = notify.path.to_string_lossy().into_owned();
    let env = [
        ("NOTIFY_SOCKET", path.as_str()),
        ("WATCHDOG_USEC", WATCHDOG_USEC),
        ("HOST", "127.0.0.1"),
        ("PORT", "0"),
        ("WIX_CLUSTER_WORKERS", "2"),
    ];
    let mut program = Program::start("hello", &env);
    let ready = notify.wait_for("READY=1");
    assert!(
        notify.messages()[ready].contains("STATUS=2 of 2 workers ready"),
        "{:?}",
        notify.messages()
    );
    // Half of WATCHDOG_USEC: pets every second while healthy, never a timeout apart.
    let petted = wait_until(PATIENCE, || notify.count("WATCHDOG=1") >= 5);
    assert!(petted, "{:?}", notify.messages());
    let gap = notify.longest_watchdog_gap(0);
    assert!(gap < WATCHDOG, "pets {gap:?} apart, timeout {WATCHDOG:?}");

    program.signal(Signal::SIGHUP);
    let reloading = notify.wait_for("RELOADING=1");
    assert!(
        notify.messages()[reloading].contains("MONOTONIC_USEC="),
        "{:?}",
        notify.messages()
    );
    program.wait_for_log("rolling restart done");
    let ready_again = wait_until(PATIENCE, || {
        notify
            .messages()
            .iter()
            .skip(reloading + 1)
            .any(|m| m.contains("READY=1"))
    });
    assert!(
        ready_again,
        "no READY=1 after the reload: {:?}",
        notify.messages()
    );

    program.signal(Signal::SIGTERM);
    let stopping = notify.wait_for("STOPPING=1");
    assert!(
        ready < reloading && reloading < stopping,
        "{:?}",
        notify.messages()
    );
    program.assert_exits_with(0);
}

#[test]
fn a_master_upgrade_makes_the_new_master_the_main_pid_and_its_watchdog() {
    let notify = NotifySocket::bind();
    // As systemd does: WATCHDOG_PID names the main process (the shell execs hello).
    let mut command = Command::new("sh");
    Program::with_test_env(&mut command, &[]);
    command
        .args(["-c", "WATCHDOG_PID=$$ exec \"$0\""])
        .arg(example_path("hello"))
        .env("NOTIFY_SOCKET", &notify.path)
        .env("WATCHDOG_USEC", WATCHDOG_USEC)
        .env("HOST", "127.0.0.1")
        .env("PORT", "0")
        .env("WIX_CLUSTER_WORKERS", "2");
    let mut program = Program::spawn(command);
    notify.wait_for("READY=1");
    notify.wait_for("WATCHDOG=1");
    program.signal(Signal::SIGUSR2);
    let at = notify.wait_for("MAINPID=");
    let message = notify.messages()[at].clone();
    let new_master: u32 = message
        .lines()
        .find_map(|line| line.strip_prefix("MAINPID="))
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {message:?}"));
    assert_ne!(new_master, program.pid());
    assert!(is_alive(new_master), "MAINPID names a live process");
    program.assert_exits_with(0);
    // With the old master gone, the watchdog is still petted: by the new master, and
    // never a timeout apart, across the handover too.
    let petted_before = notify.count("WATCHDOG=1");
    let petted = wait_until(PATIENCE, || notify.count("WATCHDOG=1") >= petted_before + 3);
    assert!(
        petted,
        "the new master does not pet the watchdog: {:?}",
        notify.messages()
    );
    let gap = notify.longest_watchdog_gap(0);
    assert!(gap < WATCHDOG, "pets {gap:?} apart, timeout {WATCHDOG:?}");
    let messages = notify.messages();
    // The new master said READY=1 itself before it was named; the old one never
    // said STOPPING=1 (systemd would take the service for stopping).
    assert!(
        messages[..at]
            .iter()
            .filter(|m| m.contains("READY=1"))
            .count()
            >= 2,
        "{messages:?}"
    );
    assert!(
        !messages.iter().any(|m| m.contains("STOPPING=1")),
        "{messages:?}"
    );
}

/// A free loopback port for `systemd-socket-activate` to listen on.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// `hello` started by Debian's `systemd-socket-activate` listening on `addr`, with 2
/// workers, the socket named `fdname` when given, and `env` added.
fn socket_activated(addr: &str, fdname: Option<&str>, env: &[&str]) -> Program {
    let mut command = Command::new("systemd-socket-activate");
    Program::with_test_env(&mut command, &[]);
    command.arg("--listen").arg(addr);
    if let Some(name) = fdname {
        command.arg(format!("--fdname={name}"));
    }
    let defaults = [
        "WIX_CLUSTER_WORKERS=2",
        "RUST_LOG=info",
        "NO_COLOR=1",
        "WIX_CLUSTER_MANAGEMENT_ADDR=127.0.0.1:0",
    ];
    for var in defaults.iter().chain(env) {
        command.args(["-E", var]);
    }
    command.arg(example_path("hello"));
    Program::spawn(command)
}

/// The worker pids that answer `GET /` on `addr`, until both of 2 workers have (or
/// [`PATIENCE`] is over).
fn serving_workers(addr: std::net::SocketAddr) -> std::collections::HashSet<u32> {
    let mut pids = std::collections::HashSet::new();
    wait_until(PATIENCE, || {
        if let Ok(response) = http_get(addr, "/") {
            pids.extend(
                response
                    .header("x-worker-pid")
                    .and_then(|p| p.parse::<u32>().ok()),
            );
        }
        pids.len() == 2
    });
    pids
}

#[test]
fn socket_activation_hands_systemds_socket_to_every_worker() {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let port_env = format!("PORT={port}");
    let program = socket_activated(&addr, None, &["HOST=127.0.0.1", &port_env]);
    program.wait_for_log("Listening on");
    // The first connection starts the service, which serves it from the passed socket.
    let addr = addr.parse().expect("an address");
    program.wait_for_200(addr, "/");
    program.wait_for_log(&format!(
        "listening on {addr} (socket \"unknown\" from systemd)"
    ));
    let workers: std::collections::HashSet<u32> = program.wait_for_workers(2).into_iter().collect();
    let pids = serving_workers(addr);
    assert_eq!(pids, workers, "every worker must serve systemd's socket");
    // The master bound nothing itself.
    assert!(!program.log().contains(&format!("listening on {addr}\n")));
}

#[test]
fn workers_find_systemds_socket_by_its_listen_fdnames_name() {
    let addr = format!("127.0.0.1:{}", free_port());
    // PORT names another port: only the name can lead the workers to the socket.
    let program = socket_activated(
        &addr,
        Some("web"),
        &["HOST=127.0.0.1", "PORT=1", "SOCKET_NAME=web"],
    );
    program.wait_for_log("Listening on");
    let addr = addr.parse().expect("an address");
    program.wait_for_200(addr, "/");
    program.wait_for_log(&format!(
        "listening on {addr} (socket \"web\" from systemd)"
    ));
    let workers: std::collections::HashSet<u32> = program.wait_for_workers(2).into_iter().collect();
    let pids = serving_workers(addr);
    assert_eq!(pids, workers, "both workers must serve the named socket");
}

#[test]
fn an_unknown_socket_name_fails_the_start_with_the_names_there_are() {
    let addr = format!("127.0.0.1:{}", free_port());
    let mut program = socket_activated(&addr, Some("web"), &["SOCKET_NAME=api"]);
    program.wait_for_log("Listening on");
    // systemd-socket-activate starts the program on the first connection.
    let _ = std::net::TcpStream::connect(&addr);
    let line = program.wait_for_log("failed to start app");
    assert!(
        line.contains("no socket named \"api\"") && line.contains("[\"web\"]"),
        "the error should name the socket asked for and those there are: {line}"
    );
    program.assert_exits_with(1);
}
