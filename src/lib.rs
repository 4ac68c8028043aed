//! Test kit for wix-cluster's black-box tests: start an example, or a fixture program of
//! the test-support package, as a real process (killed with everything it spawned when
//! dropped, its log printed when the test fails), read its log, list its children, speak
//! HTTP to it.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// A generous deadline for anything a test waits on (2-core CI machines are slow).
pub const PATIENCE: Duration = Duration::from_secs(30);

/// How long a set of workers must stay the same to count as steady: longer than any
/// period of the mechanisms that replace workers (a respawn's first backoff is 0, the
/// next 100 ms; a signalled worker is replaced 500 ms after it says so).
pub const STEADY: Duration = Duration::from_millis(1500);

/// What the master logs once its management app is bound, before the address.
pub const MANAGEMENT_LINE: &str = "management app listening on ";

/// The path of a built example of this package (`examples/<name>.rs`), building it
/// first (once per test process).
pub fn example_path(name: &str) -> PathBuf {
    built(Target::Example, name)
}

/// The path of a built fixture program: a binary of the test-support package
/// (`test-support/src/bin/<name>.rs`), building it first (once per test process).
pub fn fixture_path(name: &str) -> PathBuf {
    built(Target::Fixture, name)
}

/// The path of the built `wix-cluster` command (the `wix-cluster-cli` package), building
/// it first (once per test process).
pub fn cli_path() -> PathBuf {
    built(Target::Cli, "wix-cluster")
}

/// What [`built`] builds.
#[derive(Clone, Copy, PartialEq)]
enum Target {
    /// An example of this package.
    Example,
    /// A binary of the test-support package.
    Fixture,
    /// The binary of the wix-cluster-cli package.
    Cli,
}

/// Builds `name` (once per test process, in the test's own profile) and returns its path.
fn built(target: Target, name: &str) -> PathBuf {
    static BUILT: OnceLock<Mutex<Vec<(Target, String)>>> = OnceLock::new();
    let built = BUILT.get_or_init(|| Mutex::new(Vec::new()));
    let mut built = built.lock().unwrap_or_else(|p| p.into_inner());
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test executable lives in target/<profile>/deps")
        .to_path_buf();
    let key = (target, name.to_owned());
    let (what, path) = match target {
        Target::Example => (["--example", name], profile_dir.join("examples").join(name)),
        Target::Fixture | Target::Cli => (["--bin", name], profile_dir.join(name)),
    };
    if !built.contains(&key) {
        let cargo = option_env!("CARGO").unwrap_or("cargo");
        let mut command = Command::new(cargo);
        command
            .args(["build", "--quiet", "--manifest-path"])
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"));
        if target == Target::Fixture {
            command.args(["--package", "wix-cluster-test-support"]);
        }
        if target == Target::Cli {
            command.args(["--package", "wix-cluster-cli"]);
        }
        command.args(what);
        for (key, _) in std::env::vars_os() {
            if key.to_str().is_some_and(is_set_for_tests) {
                command.env_remove(key);
            }
        }
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            command.arg("--release");
        }
        let status = command.status().expect("run cargo build");
        assert!(status.success(), "cargo build {} {name} failed", what[0]);
        built.push(key);
    }
    path
}

/// Whether cargo or nextest set `var` for the test process, not the shell that ran
/// them. The build of an example or fixture must not see these: build scripts (ring's, for one)
/// rerun when `CARGO_MANIFEST_DIR` appears or goes, so each alternation between the
/// test build and this one would rebuild half the dependency tree.
fn is_set_for_tests(var: &str) -> bool {
    const PREFIXES: [&str; 4] = ["CARGO_PKG_", "CARGO_BIN_EXE_", "NEXTEST", "__NEXTEST"];
    const NAMES: [&str; 8] = [
        "CARGO_MANIFEST_DIR",
        "CARGO_MANIFEST_PATH",
        "CARGO_CRATE_NAME",
        "CARGO_BIN_NAME",
        "CARGO_TARGET_TMPDIR",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_RUSTC_CURRENT_DIR",
        "OUT_DIR",
    ];
    NAMES.contains(&var) || PREFIXES.iter().any(|prefix| var.starts_with(prefix))
}

/// A running example or fixture. Dropping it kills its whole process group (master and workers),
/// even when the test panics; a test that panics also gets the program's log on stderr
/// (printed by the drop), so assertions need not add [`Program::log`] to their messages.
pub struct Program {
    /// What was started (the program's file name), to head the log printed on a panic.
    name: String,
    child: Child,
    log: Arc<Mutex<String>>,
    /// The threads copying stdout and stderr into `log`; they end when the pipes close.
    capture: [std::thread::JoinHandle<()>; 2],
    status: Option<ExitStatus>,
}

impl Program {
    /// Starts example `name` with `env` added, `RUST_LOG=info` unless given, in a
    /// process group of its own; stdout and stderr are captured into [`Program::log`].
    /// The management app listens on a free loopback port unless `env` says otherwise
    /// (so that tests running side by side never fight over 8084); read it with
    /// [`Program::management_addr`].
    pub fn start(name: &str, env: &[(&str, &str)]) -> Program {
        Program::start_path(&example_path(name), env)
    }

    /// Starts fixture program `name` (a binary of the test-support package, see
    /// [`fixture_path`]) like [`Program::start`].
    pub fn start_fixture(name: &str, env: &[(&str, &str)]) -> Program {
        Program::start_path(&fixture_path(name), env)
    }

    /// Starts the program at `path` (a deployed copy of an example, say; the path is
    /// executed as given, links and all) like [`Program::start`].
    pub fn start_path(path: &Path, env: &[(&str, &str)]) -> Program {
        let mut command = Command::new(path);
        Program::with_test_env(&mut command, env);
        Program::spawn(command)
    }

    /// Starts example `name` through `wrapper` (a program and its arguments that end
    /// by executing the example's path, given last: `taskset --cpu-list 0`, `sh -c`),
    /// like [`Program::start`].
    pub fn start_wrapped(wrapper: &[&str], name: &str, env: &[(&str, &str)]) -> Program {
        let (program, args) = wrapper.split_first().expect("a wrapper program");
        let mut command = Command::new(program);
        command.args(args).arg(example_path(name));
        Program::with_test_env(&mut command, env);
        Program::spawn(command)
    }

    /// The environment every started program gets: `RUST_LOG=info`, the management app
    /// on a free loopback port, no inherited cluster settings, then `env`. For a test
    /// that builds its own [`Command`] (a wrapper that sets more) before
    /// [`Program::spawn`].
    pub fn with_test_env(command: &mut Command, env: &[(&str, &str)]) {
        command
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .env("WIX_CLUSTER_MANAGEMENT_ADDR", "127.0.0.1:0")
            .env_remove("WIX_CLUSTER_WORKERS")
            .env_remove("WIX_CLUSTER_SINGLE")
            .env_remove("WIX_CLUSTER_ADMIN_TOKEN")
            .env_remove("WIX_CLUSTER_MOUNT_POINT")
            .env_remove("WIX_CLUSTER_WATCH")
            .env_remove("WIX_CLUSTER_AUTOSCALE")
            .env_remove("WIX_CLUSTER_AUTOSCALE_MEMORY_FLOOR")
            .env_remove("NOTIFY_SOCKET")
            .envs(env.iter().copied());
    }

    /// The pid in the old master's `upgraded: the new master (pid N) ...` line, once
    /// an upgrade (SIGUSR2) handed over; waits up to [`PATIENCE`] for it.
    pub fn new_master_pid(&self) -> u32 {
        let line = self.wait_for_log("upgraded: the new master (pid ");
        line.split("(pid ")
            .nth(1)
            .and_then(|rest| rest.split(')').next())
            .and_then(|pid| pid.parse().ok())
            .unwrap_or_else(|| panic!("no pid in {line:?}"))
    }

    /// Starts `command` (for example a launcher that execs an example) in a process
    /// group of its own, capturing its stdout and stderr like [`Program::start`].
    pub fn spawn(mut command: Command) -> Program {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let name = Path::new(command.get_program())
            .file_name()
            .unwrap_or(command.get_program())
            .to_string_lossy()
            .into_owned();
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        let log = Arc::new(Mutex::new(String::new()));
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let capture = [capture(stdout, log.clone()), capture(stderr, log.clone())];
        Program {
            name,
            child,
            log,
            capture,
            status: None,
        }
    }

    /// The master's (or single process's) pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the program printed so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Waits for a log line containing `needle`; panics after [`PATIENCE`].
    pub fn wait_for_log(&self, needle: &str) -> String {
        self.wait_for_line(needle, |_| true)
    }

    /// Waits for a log line containing `needle`; panics after `patience`: for a line
    /// that comes after much work (hundreds of MiB through a debug build), which takes
    /// longer than [`PATIENCE`] on a busy machine.
    pub fn wait_for_log_within(&self, needle: &str, patience: Duration) -> String {
        let mut found = None;
        let ok = wait_until(patience, || {
            found = self
                .log()
                .lines()
                .find(|line| line.contains(needle))
                .map(str::to_owned);
            found.is_some()
        });
        assert!(ok, "no log line contains {needle:?} after {patience:?}");
        found.unwrap_or_default()
    }

    /// Waits for the `n`th log line containing `needle` and returns it; panics after
    /// [`PATIENCE`].
    pub fn wait_for_log_count(&self, needle: &str, n: usize) -> String {
        let mut found = None;
        let ok = wait_until(PATIENCE, || {
            found = self
                .log()
                .lines()
                .filter(|line| line.contains(needle))
                .nth(n.saturating_sub(1))
                .map(str::to_owned);
            found.is_some()
        });
        assert!(ok, "fewer than {n} log lines contain {needle:?}");
        found.unwrap_or_default()
    }

    /// The first log line that contains `needle` and passes `keep`; waits up to
    /// [`PATIENCE`] for it, then panics.
    fn wait_for_line(&self, needle: &str, keep: impl Fn(&str) -> bool) -> String {
        let mut found = None;
        let ok = wait_until(PATIENCE, || {
            found = self
                .log()
                .lines()
                .find(|line| line.contains(needle) && keep(line))
                .map(str::to_owned);
            found.is_some()
        });
        assert!(ok, "no log line contains {needle:?}");
        found.unwrap_or_default()
    }

    /// The app's address, from the master's `listening on <addr>` line.
    pub fn listening_addr(&self) -> SocketAddr {
        self.logged_addr("listening on ", |line| !line.contains(MANAGEMENT_LINE))
    }

    /// The management app's address, from the `management app listening on <addr>` line.
    pub fn management_addr(&self) -> SocketAddr {
        self.logged_addr(MANAGEMENT_LINE, |_| true)
    }

    /// Waits up to [`PATIENCE`] until the cluster's workers have at least `n` requests in
    /// flight (the sum of `http_server_active_requests` in `/metrics`, which a worker
    /// reports every 250 ms): the positive sign that slow requests were accepted before
    /// a test signals the cluster.
    pub fn wait_for_requests_in_flight(&self, n: u64) {
        let management = self.management_addr();
        let mut last = 0;
        let reached = wait_until(PATIENCE, || {
            let Ok(page) = http_get(management, "/metrics") else {
                return false;
            };
            last = page
                .body
                .lines()
                .filter(|line| line.starts_with("http_server_active_requests{"))
                .filter_map(|line| line.rsplit_once(' ')?.1.parse::<f64>().ok())
                .sum::<f64>() as u64;
            last >= n
        });
        assert!(
            reached,
            "expected {n} requests in flight, /metrics says {last}"
        );
    }

    /// The address after `marker` in the first log line that has it and passes `keep`;
    /// waits up to [`PATIENCE`] for it.
    fn logged_addr(&self, marker: &str, keep: impl Fn(&str) -> bool) -> SocketAddr {
        let line = self.wait_for_line(marker, keep);
        let addr = line
            .rsplit(marker)
            .next()
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_default();
        addr.parse()
            .unwrap_or_else(|_| panic!("cannot parse an address in {line:?}"))
    }

    /// Live (non-zombie) processes whose parent is the master.
    pub fn children(&self) -> Vec<u32> {
        children_of(self.pid())
    }

    /// The master's live children that run as workers: started with the worker marker
    /// in their environment. A child forked but not yet (or never: the exec failed)
    /// running the program is not one, nor a new master an upgrade starts.
    pub fn workers(&self) -> Vec<u32> {
        workers_of(self.pid())
    }

    /// Waits up to [`PATIENCE`] until the master has exactly `n` workers (see
    /// [`Program::workers`]) and returns them (sorted), as seen when the count was
    /// reached; panics with the workers it has otherwise.
    pub fn wait_for_workers(&self, n: usize) -> Vec<u32> {
        let mut workers = Vec::new();
        let reached = wait_until(PATIENCE, || {
            workers = self.workers();
            workers.len() == n
        });
        assert!(reached, "expected {n} workers, have {workers:?}");
        workers
    }

    /// Waits up to [`PATIENCE`] until the master has exactly `n` workers and the same
    /// ones for [`STEADY`], and returns them (sorted): a count reached while workers are
    /// still being replaced does not pass.
    pub fn wait_for_steady_workers(&self, n: usize) -> Vec<u32> {
        let mut workers = Vec::new();
        let mut since: Option<(Vec<u32>, Instant)> = None;
        let steady = wait_until(PATIENCE + STEADY, || {
            workers = self.workers();
            match &since {
                Some((seen, at)) if *seen == workers => {
                    workers.len() == n && at.elapsed() >= STEADY
                }
                _ => {
                    since = Some((workers.clone(), Instant::now()));
                    false
                }
            }
        });
        assert!(steady, "expected {n} steady workers, have {workers:?}");
        workers
    }

    /// Checks for [`STEADY`] that the master's workers are exactly `expected` (in any
    /// order) throughout; panics at the first change. For "nothing was replaced" after
    /// a positive sign that the action in question was handled.
    pub fn assert_workers_stay(&self, expected: &[u32], why: &str) {
        assert_workers_stay(self.pid(), expected, why);
    }

    /// Waits up to [`PATIENCE`] until process `pid` (a worker, say) is gone: exited, or
    /// a zombie; panics otherwise.
    pub fn wait_until_gone(&self, pid: u32) {
        let gone = wait_until(PATIENCE, || !is_alive(pid));
        assert!(gone, "process {pid} is still alive");
    }

    /// Requests `GET path` on `addr` until it answers 200 and returns that response;
    /// panics with the last answer after [`PATIENCE`].
    pub fn wait_for_200(&self, addr: SocketAddr, path: &str) -> Response {
        let mut last = None;
        let ok = wait_until(PATIENCE, || {
            let response = http_get(addr, path);
            let served = response.as_ref().is_ok_and(|r| r.status == 200);
            last = Some(response);
            served
        });
        match last {
            Some(Ok(response)) if ok => response,
            last => panic!("GET {path} on {addr} never answered 200, last {last:?}"),
        }
    }

    /// Sends `signal` to the master.
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        send_signal(self.pid(), signal);
    }

    /// Sends `signal` to every process of the program's process group (master and
    /// workers), as `kill -<SIG> -<pgid>` and `systemctl kill` do.
    pub fn signal_group(&self, signal: nix::sys::signal::Signal) {
        let group = nix::unistd::Pid::from_raw(-(self.pid() as i32));
        nix::sys::signal::kill(group, signal).expect("signal the process group");
    }

    /// Whether the master has exited (reaping it), without waiting for its log to be
    /// complete (see [`Program::wait_exit`]): for a test that times an exit while
    /// another process of its group (a new master) holds the log open.
    pub fn has_exited(&mut self) -> bool {
        if self.status.is_none() {
            self.status = self.child.try_wait().expect("poll the master");
        }
        self.status.is_some()
    }

    /// Waits up to `timeout` for the master to exit; once it has, [`Program::log`] has
    /// everything it (and its workers) wrote.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while self.status.is_none() && Instant::now() < deadline {
            self.status = self.child.try_wait().expect("poll the master");
            std::thread::sleep(Duration::from_millis(20));
        }
        if self.status.is_some() {
            self.wait_for_capture();
        }
        self.status
    }

    /// Waits for the capture threads to copy the last lines and end: the pipes close
    /// when every process holding them has exited, so up to [`PATIENCE`] while the
    /// program's process group still has members, then 1 s more. A process outside the
    /// group (a new master after an upgrade) may keep them open: then the log may lack
    /// lines still to come, which is said on stderr (a failing test shows it).
    fn wait_for_capture(&self) {
        let finished = || self.capture.iter().all(|thread| thread.is_finished());
        wait_until(PATIENCE, || {
            finished() || group_members(self.child.id()).is_empty()
        });
        if !wait_until(Duration::from_secs(1), finished) {
            eprintln!(
                "note: {}'s output is still open after its exit (a process outside its \
                 group holds it); its log may lack lines still to come",
                self.name
            );
        }
    }

    /// Waits up to [`PATIENCE`] for the master to exit and asserts that it exited with
    /// `code`; panics when it did not exit, or exited otherwise.
    pub fn assert_exits_with(&mut self, code: i32) {
        let status = self.wait_exit(PATIENCE);
        let Some(status) = status else {
            panic!("the master did not exit within {PATIENCE:?}");
        };
        assert_eq!(status.code(), Some(code), "the master exited with {status}");
    }
}

impl Drop for Program {
    /// Kills the program's process group and the groups its masters' workers lead (with
    /// what their apps started); when the test is failing (the thread is panicking),
    /// prints the program's log to stderr first, so that no assertion needs to add it to
    /// its message.
    fn drop(&mut self) {
        let kill_group = |leader: u32| {
            let group = nix::unistd::Pid::from_raw(-(leader as i32));
            let _ = nix::sys::signal::kill(group, nix::sys::signal::Signal::SIGKILL);
        };
        // Every master (the first, and a new one an upgrade started, both in this
        // group): each of its workers leads a group of its own.
        for master in group_members(self.child.id()) {
            for worker in children_of(master) {
                kill_group(worker);
            }
        }
        kill_group(self.child.id());
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            self.wait_for_capture();
            eprintln!(
                "---- log of {} (pid {}) ----\n{}---- end of the log of {} ----",
                self.name,
                self.child.id(),
                self.log(),
                self.name,
            );
        }
    }
}

/// Copies `stream` into `log`, line by line, until it closes.
fn capture(
    stream: impl Read + Send + 'static,
    log: Arc<Mutex<String>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            let mut log = log.lock().unwrap_or_else(|p| p.into_inner());
            log.push_str(&line);
            log.push('\n');
        }
    })
}

/// Reads an HTTP/1.1 response head from `reader`: its status line must say 200; the
/// headers come back as `(name in lower case, value)` pairs. An error for another status,
/// or a connection closed within the head.
pub fn read_ok_head(reader: &mut impl std::io::BufRead) -> std::io::Result<Vec<(String, String)>> {
    let mut status = String::new();
    reader.read_line(&mut status)?;
    if !status.starts_with("HTTP/1.1 200") {
        return Err(std::io::Error::other(format!("status line {status:?}")));
    }
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Err(std::io::Error::other("closed in the head"));
        }
        let line = line.trim_end();
        if line.is_empty() {
            return Ok(headers);
        }
        if let Some((name, value)) = line.split_once(':') {
            headers.push((name.to_ascii_lowercase(), value.trim().to_owned()));
        }
    }
}

/// A TCP connection to `addr` that has sent a WebSocket handshake for `path` and nothing
/// else (the answer is left to read): a client that may then ignore what the server
/// sends, its close frame included.
pub fn raw_websocket(addr: SocketAddr, path: &str) -> std::net::TcpStream {
    use std::io::Write;
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .expect("send the handshake");
    stream
}

/// When a log line was written: the RFC 3339 timestamp after its `[...]` prefix (the
/// default text format's); panics when the line has none.
pub fn logged_at(line: &str) -> std::time::SystemTime {
    let stamp = line
        .split_once("] ")
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .unwrap_or_default();
    humantime::parse_rfc3339(stamp).unwrap_or_else(|e| panic!("no timestamp in {line:?}: {e}"))
}

/// Polls `check` every 20 ms until it is true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends `signal` to process `pid` (a worker, say); panics when it cannot.
pub fn send_signal(pid: u32, signal: nix::sys::signal::Signal) {
    let target = nix::unistd::Pid::from_raw(pid as i32);
    nix::sys::signal::kill(target, signal)
        .unwrap_or_else(|e| panic!("send {signal} to {pid}: {e}"));
}

/// Whether `pid` is a live process (not a zombie).
pub fn is_alive(pid: u32) -> bool {
    proc_stat(pid).is_some_and(|stat| stat.is_live())
}

/// Whether process `pid` runs as a wix-cluster worker (its environment, as it started,
/// has the worker marker).
pub fn is_worker(pid: u32) -> bool {
    environ_of(pid)
        .iter()
        .any(|entry| entry.starts_with("__WIX_CLUSTER_WORKER="))
}

/// The live children of `master` that run as workers (see [`is_worker`]), sorted.
pub fn workers_of(master: u32) -> Vec<u32> {
    let mut workers: Vec<u32> = children_of(master)
        .into_iter()
        .filter(|&pid| is_worker(pid))
        .collect();
    workers.sort_unstable();
    workers
}

/// Checks for [`STEADY`] that `master`'s workers are exactly `expected` (in any order)
/// throughout; panics at the first change.
pub fn assert_workers_stay(master: u32, expected: &[u32], why: &str) {
    let mut expected = expected.to_vec();
    expected.sort_unstable();
    let until = Instant::now() + STEADY;
    loop {
        let now = workers_of(master);
        assert_eq!(now, expected, "{why}: the workers changed");
        if Instant::now() >= until {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Live processes whose parent is `parent`.
pub fn children_of(parent: u32) -> Vec<u32> {
    live_processes(|stat| stat.ppid == parent)
}

/// Zombie processes whose parent is `parent` (exited, not reaped).
pub fn zombies_of(parent: u32) -> Vec<u32> {
    all_processes()
        .into_iter()
        .filter(|&pid| proc_stat(pid).is_some_and(|stat| stat.state == 'Z' && stat.ppid == parent))
        .collect()
}

/// The file process `pid` runs (`/proc/<pid>/exe`, as the kernel resolved it at exec).
pub fn exe_of(pid: u32) -> PathBuf {
    std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default()
}

/// How many descriptors process `pid` has open.
pub fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |dir| dir.count())
}

/// Resident memory of process `pid`, in bytes (`VmRSS`).
pub fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|kb| kb.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// The environment process `pid` started with (`/proc/<pid>/environ`), as
/// `NAME=value` strings.
pub fn environ_of(pid: u32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/environ"))
        .unwrap_or_default()
        .split(|&byte| byte == 0)
        .filter(|entry| !entry.is_empty())
        .map(|entry| String::from_utf8_lossy(entry).into_owned())
        .collect()
}

/// A folder of a test's own, `<base>/<name>` (a test passes
/// `env!("CARGO_TARGET_TMPDIR")`), emptied when made and removed on drop.
pub struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    pub fn new(base: &str, name: &str) -> Scratch {
        let dir = Path::new(base).join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the test's folder");
        Scratch { dir }
    }

    /// `relative` inside the folder.
    pub fn path(&self, relative: &str) -> PathBuf {
        self.dir.join(relative)
    }

    /// Puts a copy of `source` at `relative` the way deployments do: a new file
    /// renamed over the old one (a running program keeps its own, now unlinked, file).
    pub fn deploy(&self, source: &Path, relative: &str) -> PathBuf {
        let target = self.path(relative);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).expect("create the release folder");
        }
        let staged = target.with_extension("staged");
        std::fs::copy(source, &staged).expect("copy the binary");
        std::fs::rename(&staged, &target).expect("rename the binary into place");
        target
    }

    /// Points the symlink `relative` at `target`, atomically (a new link renamed over
    /// the old one), as release tools switch `current`.
    pub fn link(&self, relative: &str, target: &str) {
        let link = self.path(relative);
        let staged = self.path(&format!("{relative}.staged"));
        let _ = std::fs::remove_file(&staged);
        std::os::unix::fs::symlink(target, &staged).expect("make the link");
        std::fs::rename(&staged, &link).expect("switch the link");
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Every live process in `pid`'s process group (the master's, for a [`Program`]).
pub fn group_members(group: u32) -> Vec<u32> {
    live_processes(|stat| stat.pgrp == group)
}

/// The live processes whose `/proc/<pid>/stat` passes `keep`.
fn live_processes(keep: impl Fn(&ProcStat) -> bool) -> Vec<u32> {
    all_processes()
        .into_iter()
        .filter(|&pid| proc_stat(pid).is_some_and(|stat| stat.is_live() && keep(&stat)))
        .collect()
}

/// Every pid in `/proc`.
fn all_processes() -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .collect()
}

/// The fields the kit reads from `/proc/<pid>/stat`.
struct ProcStat {
    state: char,
    ppid: u32,
    pgrp: u32,
}

impl ProcStat {
    /// Neither a zombie nor dead.
    fn is_live(&self) -> bool {
        self.state != 'Z' && self.state != 'X'
    }
}

/// State letter, parent pid and process group from `/proc/<pid>/stat`.
fn proc_stat(pid: u32) -> Option<ProcStat> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some(ProcStat { state, ppid, pgrp })
}

/// A parsed HTTP/1.1 response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// `GET path` on a new connection (`Connection: close`), with a 10 s timeout.
pub fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<Response> {
    http_request(addr, "GET", path, &[])
}

/// `GET path` like [`http_get`], waiting up to `timeout` for each read and write: for a
/// request whose answer takes long by design (a flood the app sends before it answers),
/// on a machine that may be busy.
pub fn http_get_within(
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
) -> std::io::Result<Response> {
    request_within(addr, "GET", path, &[], timeout)
}

/// `method path` with `headers` and no body on a new connection (`Connection: close`),
/// with a 10 s timeout.
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<Response> {
    request_within(addr, method, path, headers, Duration::from_secs(10))
}

fn request_within(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    timeout: Duration,
) -> std::io::Result<Response> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    if method != "GET" && method != "HEAD" {
        request.push_str("Content-Length: 0\r\n");
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> std::io::Result<Response> {
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| bad("no end of headers"))?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| bad("no status line"))?;
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Ok(Response {
        status,
        headers,
        body: body.to_owned(),
    })
}

/// Continuous HTTP load from several client threads, one new connection per request
/// (so that every request is accepted from the shared queue afresh).
pub struct Load {
    stop: Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<LoadReport>>,
}

/// What a [`Load`] saw. Displays as `<ok> ok, <n> failed: <what failed>`.
#[derive(Debug, Default, Clone)]
pub struct LoadReport {
    pub ok: u64,
    /// Requests that failed (connection error or non-200), with what went wrong.
    pub failed: Vec<String>,
    /// The `x-worker-pid`s (or pid bodies) that answered.
    pub served_by: HashSet<u32>,
}

impl std::fmt::Display for LoadReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ok, {} failed: {:?}",
            self.ok,
            self.failed.len(),
            self.failed
        )
    }
}

impl Load {
    /// Starts `clients` threads requesting `path` on `addr` back to back.
    pub fn start(addr: SocketAddr, clients: usize, path: &'static str) -> Load {
        Load::paced(addr, clients, path, Duration::ZERO)
    }

    /// Starts `clients` threads requesting `path` on `addr`, each thinking for `think`
    /// after every answer (a client busy only part of the time).
    pub fn paced(addr: SocketAddr, clients: usize, path: &'static str, think: Duration) -> Load {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let threads = (0..clients)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut report = LoadReport::default();
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        match http_get(addr, path) {
                            Ok(response) if response.status == 200 => {
                                report.ok += 1;
                                let pid: Option<u32> = response
                                    .header("x-worker-pid")
                                    .unwrap_or(response.body.as_str())
                                    .parse()
                                    .ok();
                                report.served_by.extend(pid);
                            }
                            Ok(response) => {
                                report.failed.push(format!("status {}", response.status))
                            }
                            Err(e) => report.failed.push(e.to_string()),
                        }
                        if !think.is_zero() {
                            std::thread::sleep(think);
                        }
                    }
                    report
                })
            })
            .collect();
        Load { stop, threads }
    }

    /// Stops the clients and adds up what they saw.
    pub fn stop(self) -> LoadReport {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut total = LoadReport::default();
        for thread in self.threads {
            let report = thread.join().expect("load thread");
            total.ok += report.ok;
            total.failed.extend(report.failed);
            total.served_by.extend(report.served_by);
        }
        total
    }
}

/// Asserts that `promtool check metrics` (Debian's prometheus package) reports no
/// problem with `text`, a `/metrics` page.
pub fn promtool_finds_nothing(text: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool (apt-get install prometheus; .ci/run does it)");
    {
        let mut stdin = child.stdin.take().expect("promtool's stdin");
        stdin.write_all(text.as_bytes()).expect("write to promtool");
    }
    let output = child.wait_with_output().expect("promtool's output");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success() && said.trim().is_empty(),
        "promtool check metrics: {said}\n{text}"
    );
}
