//! Master upgrade without closing the port (SIGUSR2): the running master starts a new
//! master from the binary on disk and hands it the listening sockets; once the new
//! master's workers are ready, the old one drains and exits. Under continuous load no
//! request may fail; a new master that cannot start leaves the old one serving.

use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::Signal;
use wix_cluster_suite::{Load, PATIENCE, Program, example_path, http_get, is_alive, wait_until};

/// A copy of the `hello` example in a folder of its own, so that the test can replace
/// the binary on disk as a deployment would.
struct Deployed {
    dir: PathBuf,
    binary: PathBuf,
}

impl Deployed {
    fn hello(test: &str) -> Deployed {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("upgrade-{test}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the deployment folder");
        let binary = dir.join("hello");
        let deployed = Deployed { dir, binary };
        deployed.replace_with(&example_path("hello"));
        deployed
    }

    /// Replaces the binary the way deployments do: a new file renamed over the old one
    /// (the running program keeps its own, now unlinked, file).
    fn replace_with(&self, source: &Path) {
        let staged = self.dir.join("hello.new");
        std::fs::copy(source, &staged).expect("copy the new binary");
        std::fs::rename(&staged, &self.binary).expect("rename the new binary into place");
    }

    /// Replaces the binary with a program that fails at once.
    fn replace_with_failing(&self) {
        let staged = self.dir.join("hello.new");
        std::fs::write(&staged, "#!/bin/sh\necho 'broken build' >&2\nexit 3\n")
            .expect("write the failing binary");
        let mode = std::os::unix::fs::PermissionsExt::from_mode(0o755);
        std::fs::set_permissions(&staged, mode).expect("make it executable");
        std::fs::rename(&staged, &self.binary).expect("rename the failing binary into place");
    }

    /// Starts the deployed binary with 2 workers on a free loopback port.
    fn start(&self) -> Program {
        let env = [
            ("HOST", "127.0.0.1"),
            ("PORT", "0"),
            ("WIX_CLUSTER_WORKERS", "2"),
        ];
        Program::start_path(&self.binary, &env)
    }
}

impl Drop for Deployed {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Waits until `master` has `n` live children and returns them.
fn workers_of(master: u32, n: usize) -> Vec<u32> {
    let mut workers = Vec::new();
    let ok = wait_until(PATIENCE, || {
        workers = wix_cluster_suite::workers_of(master);
        workers.len() == n
    });
    assert!(ok, "master {master} has workers {workers:?}, expected {n}");
    workers
}

/// Runs `check` every few milliseconds on a thread of its own until stopped; counts
/// the successes and keeps every failure.
struct Probe {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<(u64, Vec<String>)>,
}

impl Probe {
    fn start(check: impl Fn() -> Result<(), String> + Send + 'static) -> Probe {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut passed = 0;
            let mut failed = Vec::new();
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                match check() {
                    Ok(()) => passed += 1,
                    Err(e) => failed.push(e),
                }
                std::thread::sleep(Duration::from_millis(3));
            }
            (passed, failed)
        });
        Probe { stop, thread }
    }

    /// Connections to `addr`: a refusal fails.
    fn connect(addr: std::net::SocketAddr) -> Probe {
        Probe::start(move || {
            std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))
                .map(drop)
                .map_err(|e| e.to_string())
        })
    }

    /// `GET /health/ready` on the management app: anything but 200 fails.
    fn readiness(management: std::net::SocketAddr) -> Probe {
        Probe::start(move || match http_get(management, "/health/ready") {
            Ok(r) if r.status == 200 => Ok(()),
            Ok(r) => Err(format!("{} {}", r.status, r.body)),
            Err(e) => Err(e.to_string()),
        })
    }

    /// Stops it: (successes, failures).
    fn stop(self) -> (u64, Vec<String>) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().expect("probe thread")
    }
}

#[test]
fn master_upgrade_under_load_changes_the_master_pid_never_refuses_and_fails_no_request() {
    let deployed = Deployed::hello("under-load");
    let mut program = deployed.start();
    let old_master = program.pid();
    let old_workers = workers_of(old_master, 2);
    let addr = program.listening_addr();
    let management = program.management_addr();
    assert_eq!(http_get(addr, "/").map(|r| r.status).ok(), Some(200));

    // A new build lands on disk; the running master must start that one.
    deployed.replace_with(&example_path("hello"));

    let load = Load::start(addr, 4, "/");
    let probe = Probe::connect(addr);
    let readiness = Probe::readiness(management);
    std::thread::sleep(Duration::from_millis(500));
    program.signal(Signal::SIGUSR2);

    let new_master = program.new_master_pid();
    assert_ne!(new_master, old_master, "the master pid must change");
    let status = program
        .wait_exit(PATIENCE)
        .unwrap_or_else(|| panic!("the old master did not exit"));
    assert!(status.success(), "the old master exited with {status}");
    assert!(is_alive(new_master), "the new master is gone");
    let new_workers = workers_of(new_master, 2);
    assert!(
        old_workers.iter().all(|pid| !is_alive(*pid)),
        "old workers {old_workers:?} outlived the old master"
    );

    // The new cluster serves for a while under the same load.
    let served_by_new = wait_until(PATIENCE, || {
        http_get(addr, "/")
            .ok()
            .and_then(|r| {
                r.header("x-worker-pid")
                    .and_then(|pid| pid.parse::<u32>().ok())
            })
            .is_some_and(|pid| new_workers.contains(&pid))
    });
    std::thread::sleep(Duration::from_millis(500));
    let report = load.stop();
    let (connects, refused) = probe.stop();
    let (ready, not_ready) = readiness.stop();
    assert!(served_by_new, "no new worker answered");
    assert!(
        report.failed.is_empty(),
        "requests failed during the upgrade: {report}"
    );
    assert!(report.ok > 50, "too little load went through: {report}");
    assert!(
        refused.is_empty(),
        "the port refused {} of {} connections: {refused:?}",
        refused.len(),
        connects as usize + refused.len()
    );
    assert!(
        report.served_by.iter().any(|pid| old_workers.contains(pid))
            && report.served_by.iter().any(|pid| new_workers.contains(pid)),
        "the load should have been served by old and new workers: {:?} (old {old_workers:?}, \
         new {new_workers:?})",
        report.served_by
    );

    // Readiness never dropped: the old master answered until the new one was ready.
    assert!(
        not_ready.is_empty() && ready > 0,
        "/health/ready answered 200 {ready} times, otherwise: {not_ready:?}"
    );

    // The management app kept its address and is now the new master's.
    let info = http_get(management, "/").expect("management app after the upgrade");
    assert_eq!(info.status, 200);
    assert!(
        info.body.contains(&format!("\"pid\":{new_master}")),
        "management app should be served by the new master {new_master}: {}",
        info.body
    );
}

/// The causes of the `upgrade` steps in the event log of the master serving the
/// management app, oldest first.
fn upgrade_steps(program: &Program) -> Vec<String> {
    let Ok(response) = http_get(program.management_addr(), "/events") else {
        return Vec::new();
    };
    let page: serde_json::Value = serde_json::from_str(&response.body).unwrap_or_default();
    let mut steps: Vec<String> = page["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["kind"] == "upgrade")
        .filter_map(|e| e["cause"].as_str().map(str::to_owned))
        .collect();
    steps.reverse();
    steps
}

#[test]
fn a_new_master_that_fails_to_start_leaves_the_old_one_serving() {
    let deployed = Deployed::hello("failing");
    let program = deployed.start();
    let master = program.pid();
    let workers = workers_of(master, 2);
    let addr = program.listening_addr();

    deployed.replace_with_failing();
    let load = Load::start(addr, 2, "/");
    program.signal(Signal::SIGUSR2);
    let line = program.wait_for_log("upgrade failed");
    assert!(
        line.contains("exit code 3") && line.contains("keeps serving"),
        "the failure should say why: {line}"
    );
    // The load runs on while the old workers are checked for a steady window.
    let mut workers = workers;
    workers.sort_unstable();
    wix_cluster_suite::assert_workers_stay(master, &workers, "the old workers must keep running");
    let report = load.stop();

    assert!(is_alive(master), "the old master must keep running");
    assert!(
        report.failed.is_empty() && report.ok > 0,
        "the old master must keep serving: {report}"
    );
    assert_eq!(http_get(addr, "/").map(|r| r.status).ok(), Some(200));
    // The old master's event log has both steps, with the reason.
    let mut steps = Vec::new();
    let logged = wait_until(PATIENCE, || {
        steps = upgrade_steps(&program);
        steps.len() >= 2
    });
    assert!(logged, "upgrade steps: {steps:#?}");
    assert!(
        steps[0].starts_with("upgrade started: new master pid"),
        "{steps:#?}"
    );
    assert!(
        steps[1].starts_with("upgrade failed") && steps[1].contains("exit code 3"),
        "{steps:#?}"
    );

    // The broken file stays on disk: a killed worker is replaced from the build the
    // cluster runs, not from it (which would crash-loop a healthy cluster).
    wix_cluster_suite::send_signal(workers[0], Signal::SIGKILL);
    let mut now = Vec::new();
    let replaced = wait_until(PATIENCE, || {
        now = wix_cluster_suite::workers_of(master);
        now.len() == 2 && !now.contains(&workers[0])
    });
    assert!(replaced, "worker {} not replaced: {now:?}", workers[0]);
    program.wait_for_200(addr, "/");
    for pid in &now {
        let exe = wix_cluster_suite::exe_of(*pid);
        assert!(
            exe.to_string_lossy().ends_with("hello (deleted)"),
            "worker {pid} runs {exe:?}"
        );
    }
    assert!(
        !program.log().contains("died unexpectedly (exit code 3)"),
        "a worker ran the broken file"
    );
}

#[test]
fn a_scaled_cluster_stays_scaled_across_an_upgrade() {
    let deployed = Deployed::hello("scaled");
    let mut program = deployed.start();
    let old_master = program.pid();
    workers_of(old_master, 2);
    program.signal(Signal::SIGTTIN);
    workers_of(old_master, 3);
    program.signal(Signal::SIGTTIN);
    workers_of(old_master, 4);

    program.signal(Signal::SIGUSR2);
    let new_master = program.new_master_pid();
    let status = program
        .wait_exit(PATIENCE)
        .unwrap_or_else(|| panic!("the old master did not exit"));
    assert!(status.success(), "the old master exited with {status}");
    workers_of(new_master, 4);
    program.wait_for_log("keeping what the old master changed at run time");
    // And the same 4 for a steady window (nothing scales it back to the configured 2).
    let four = workers_of(new_master, 4);
    wix_cluster_suite::assert_workers_stay(new_master, &four, "the scaled count");
    let addr = program.listening_addr();
    assert_eq!(http_get(addr, "/").map(|r| r.status).ok(), Some(200));
    // The new master's own event log starts with its taking over.
    let mut steps = Vec::new();
    let logged = wait_until(PATIENCE, || {
        steps = upgrade_steps(&program);
        !steps.is_empty()
    });
    assert!(logged, "no upgrade step in the new master's log");
    assert_eq!(steps, ["took over from the old master: 4 workers ready"]);
}
