//! The `wix-cluster` command (the `wix-cluster-cli` package), the real binary against
//! real clusters: `ls` by the discovery files (as root and as an unprivileged user, a
//! SIGKILLed master dropped), `status` fitted to 80 and 200 columns and as JSON, `roll`
//! waiting for every new worker and failing with the reason onto a build that cannot
//! start, `scale`, `upgrade`, `stop`, the exit codes for a missing token and an
//! unreachable cluster, `events -f` across an upgrade, and `top` driven in tmux.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::Value;
use wix_cluster_suite::{
    PATIENCE, Program, Scratch, cli_path, example_path, http_get, send_signal, wait_until,
};

const TOKEN: &str = "cli-t0ken-s3cret";

/// What a run of the command gave.
#[derive(Debug)]
struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Ran {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }
}

/// The command as `wrapper` (`setpriv ...`, or nothing) runs it, with `args`, the
/// environment cleaned of cluster settings, then `env`.
fn command(wrapper: &[&str], args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut command = match wrapper.split_first() {
        Some((program, rest)) => {
            let mut command = Command::new(program);
            command.args(rest).arg(cli_path());
            command
        }
        None => Command::new(cli_path()),
    };
    command
        .args(args)
        .env_remove("WIX_CLUSTER_ADMIN_TOKEN")
        .env_remove("WIX_CLUSTER_MANAGEMENT_ADDR")
        .env_remove("COLUMNS")
        .env_remove("NO_COLOR")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// Runs the command to its end (killed after 3x PATIENCE: it never hangs a test).
fn run_wrapped(wrapper: &[&str], args: &[&str], env: &[(&str, &str)]) -> Ran {
    let mut child = command(wrapper, args, env)
        .spawn()
        .expect("start wix-cluster");
    let read = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_string(&mut text);
            }
            text
        })
    };
    let stdout = read(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = read(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + PATIENCE * 3;
    let status = loop {
        if let Some(status) = child.try_wait().expect("poll wix-cluster") {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let ran = Ran {
        code: status.and_then(|s| s.code()),
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    };
    assert!(
        status.is_some(),
        "wix-cluster {args:?} did not end: {ran:?}"
    );
    ran
}

fn run(args: &[&str], env: &[(&str, &str)]) -> Ran {
    run_wrapped(&[], args, env)
}

/// `example` with `workers` workers, its management app ready: the program and the
/// management app's address.
fn cluster(example: &str, workers: &str, extra: &[(&str, &str)]) -> (Program, SocketAddr) {
    let mut env = vec![("PORT", "0"), ("WIX_CLUSTER_WORKERS", workers)];
    env.extend_from_slice(extra);
    let program = Program::start(example, &env);
    let management = program.management_addr();
    program.wait_for_200(management, "/health/ready");
    (program, management)
}

fn get_json(addr: SocketAddr, path: &str) -> Value {
    let response = http_get(addr, path).unwrap_or_else(|e| panic!("GET {path}: {e}"));
    serde_json::from_str(&response.body).unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

/// The pids of the workers `/workers` lists as serving (neither draining, as a
/// replaced one does a moment longer, nor exited), and whether all are ready.
fn live_workers(management: SocketAddr) -> (BTreeSet<u64>, bool) {
    let workers = get_json(management, "/workers");
    let rows: Vec<&Value> = workers["workers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|w| w["state"] != "exited" && w["state"] != "draining")
        .collect();
    let ready = rows.iter().all(|w| w["state"] == "ready");
    (
        rows.iter().filter_map(|w| w["pid"].as_u64()).collect(),
        ready,
    )
}

/// The pids `ls -o json` lists.
fn listed(wrapper: &[&str], env: &[(&str, &str)]) -> BTreeSet<u64> {
    let ran = run_wrapped(wrapper, &["ls", "-o", "json"], env);
    assert_eq!(ran.code, Some(0), "{ran:?}");
    ran.json()["clusters"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["pid"].as_u64())
        .collect()
}

/// Two clusters started through `wrapper` with `env` are both listed; after one is
/// killed with SIGKILL, only the other, and its stale file is gone from `dir`.
fn ls_finds_two_and_drops_the_killed_one(wrapper: &[&str], env: &[(&str, &str)], dir: &Path) {
    let mut full = vec![("PORT", "0"), ("WIX_CLUSTER_WORKERS", "1")];
    full.extend_from_slice(env);
    let start = |name: &str| match wrapper {
        [] => Program::start(name, &full),
        _ => Program::start_wrapped(wrapper, name, &full),
    };
    let first = start("hello");
    let second = start("management_page");
    for program in [&first, &second] {
        let management = program.management_addr();
        program.wait_for_200(management, "/health/ready");
    }
    let (a, b) = (u64::from(first.pid()), u64::from(second.pid()));
    let mut pids = BTreeSet::new();
    let both = wait_until(PATIENCE, || {
        pids = listed(wrapper, env);
        pids.contains(&a) && pids.contains(&b)
    });
    assert!(both, "ls listed {pids:?}, not both {a} and {b}");
    let table = run_wrapped(wrapper, &["ls"], env);
    assert!(table.stdout.contains("hello") && table.stdout.contains("management_page"));
    send_signal(first.pid(), Signal::SIGKILL);
    let dropped = wait_until(PATIENCE, || {
        pids = listed(wrapper, env);
        !pids.contains(&a) && pids.contains(&b)
    });
    assert!(dropped, "after the SIGKILL of {a}, ls listed {pids:?}");
    assert!(
        !dir.join(format!("{a}.json")).exists(),
        "the stale file of {a} is left in {}",
        dir.display()
    );
    assert!(dir.join(format!("{b}.json")).exists());
}

#[test]
fn ls_finds_two_clusters_and_drops_one_killed_with_sigkill() {
    let scratch = Scratch::new(env!("CARGO_TARGET_TMPDIR"), "cli-ls-root");
    let xdg = scratch.path("run");
    std::fs::create_dir_all(&xdg).expect("make the runtime dir");
    let xdg = xdg.to_str().expect("a UTF-8 path").to_owned();
    ls_finds_two_and_drops_the_killed_one(
        &[],
        &[("XDG_RUNTIME_DIR", &xdg)],
        &Path::new(&xdg).join("wix-cluster"),
    );
}

#[test]
fn ls_works_for_an_unprivileged_user_without_a_home() {
    // nobody's home does not exist and no XDG_RUNTIME_DIR is set: the masters and the
    // command both fall back to /tmp/wix-cluster-65534.
    let wrapper = [
        "setpriv",
        "--reuid=nobody",
        "--regid=nogroup",
        "--clear-groups",
    ];
    let env = [("HOME", "/nonexistent"), ("XDG_RUNTIME_DIR", "")];
    let uid = nix::unistd::User::from_name("nobody")
        .ok()
        .flatten()
        .map_or(65534, |u| u.uid.as_raw());
    let dir = std::env::temp_dir().join(format!("wix-cluster-{uid}"));
    ls_finds_two_and_drops_the_killed_one(&wrapper, &env, &dir);
}

#[test]
fn status_fits_80_and_200_columns_and_its_json_has_every_worker() {
    let (program, management) = cluster("hello", "3", &[]);
    let pid = program.pid().to_string();
    let workers = program.wait_for_steady_workers(3);
    for width in [200usize, 80, 40] {
        let ran = run(&["status", &pid], &[("COLUMNS", &width.to_string())]);
        assert_eq!(ran.code, Some(0), "{ran:?}");
        for line in ran.stdout.lines() {
            assert!(
                line.chars().count() <= width,
                "a line of {} columns at {width}: {line:?}",
                line.chars().count()
            );
        }
        assert!(!ran.stdout.contains('\x1b'), "colour into a pipe: {ran:?}");
        for worker in &workers {
            assert!(
                ran.stdout.contains(&worker.to_string()),
                "no {worker} at {width}: {ran:?}"
            );
        }
        let header = ran.stdout.lines().nth(1).unwrap_or_default();
        if width == 200 {
            for column in [
                "ID", "GEN", "PID", "STATE", "UPTIME", "CPU%", "RSS", "REQ/S", "P99", "RESTARTS",
            ] {
                assert!(
                    header.split_whitespace().any(|h| h == column),
                    "no {column} at 200: {header:?}"
                );
            }
        }
    }
    let ran = run(&["top", &pid], &[]);
    assert_eq!(ran.code, Some(2), "top without a terminal: {ran:?}");
    // Memory is sampled every second: the first `status` may come before a sample.
    let sampled = |json: &Value| {
        json["workers"]
            .as_array()
            .is_some_and(|rows| rows.iter().all(|row| !row["rss_bytes"].is_null()))
    };
    let mut json = Value::Null;
    let ok = wait_until(PATIENCE, || {
        let ran = run(&["status", "-c", &pid, "-o", "json"], &[]);
        assert_eq!(ran.code, Some(0), "{ran:?}");
        json = ran.json();
        sampled(&json)
    });
    assert!(ok, "no memory sample in {json}");
    assert_eq!(json["cluster"]["pid"], program.pid());
    assert_eq!(json["cluster"]["management_addr"], management.to_string());
    let listed: BTreeSet<u64> = json["workers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|w| w["pid"].as_u64())
        .collect();
    for worker in &workers {
        assert!(
            listed.contains(&u64::from(*worker)),
            "{worker} missing from {json}"
        );
    }
    for row in json["workers"].as_array().into_iter().flatten() {
        for field in [
            "id",
            "generation",
            "state",
            "uptime_seconds",
            "restarts",
            "rss_bytes",
        ] {
            assert!(!row[field].is_null(), "{field} missing from {row}");
        }
    }
}

#[test]
fn roll_returns_0_once_every_worker_was_replaced_and_is_ready() {
    let (program, management) = cluster("hello", "2", &[("WIX_CLUSTER_ADMIN_TOKEN", TOKEN)]);
    let (before, _) = live_workers(management);
    let ran = run(
        &["roll", &program.pid().to_string()],
        &[("WIX_CLUSTER_ADMIN_TOKEN", TOKEN)],
    );
    assert_eq!(ran.code, Some(0), "{ran:?}");
    assert!(
        ran.stdout.contains("rolling restart finished: 2 of 2"),
        "{ran:?}"
    );
    // At its return, not later: every worker is new and ready.
    let (after, ready) = live_workers(management);
    assert!(
        ready,
        "roll returned before every worker was ready: {after:?}"
    );
    assert!(
        after.len() >= 2 && after.is_disjoint(&before),
        "{before:?} -> {after:?}"
    );
    assert!(!ran.stdout.contains(TOKEN) && !ran.stderr.contains(TOKEN));
}

#[test]
fn roll_onto_a_build_that_cannot_start_exits_1_with_the_reason_and_the_old_workers_serve() {
    let scratch = Scratch::new(env!("CARGO_TARGET_TMPDIR"), "cli-roll-broken");
    let binary = scratch.deploy(&example_path("hello"), "hello");
    let program = Program::start_path(
        &binary,
        &[
            ("PORT", "0"),
            ("WIX_CLUSTER_WORKERS", "2"),
            ("WIX_CLUSTER_ADMIN_TOKEN", TOKEN),
        ],
    );
    let management = program.management_addr();
    let app = program.listening_addr();
    program.wait_for_200(management, "/health/ready");
    let (before, _) = live_workers(management);
    let staged = scratch.path("hello.new");
    std::fs::write(&staged, "#!/bin/sh\necho 'broken build' >&2\nexit 3\n").expect("write");
    let mode = std::os::unix::fs::PermissionsExt::from_mode(0o755);
    std::fs::set_permissions(&staged, mode).expect("chmod");
    std::fs::rename(&staged, &binary).expect("rename the broken build into place");
    let ran = run(
        &["roll", "-c", &program.pid().to_string()],
        &[("WIX_CLUSTER_ADMIN_TOKEN", TOKEN)],
    );
    assert_eq!(ran.code, Some(1), "{ran:?}");
    assert!(
        ran.stderr.contains("roll failed: rolling restart stopped"),
        "no reason: {ran:?}"
    );
    let (after, ready) = live_workers(management);
    assert_eq!(after, before, "the old workers were replaced");
    assert!(ready);
    assert_eq!(http_get(app, "/").map(|r| r.status).ok(), Some(200));
}

#[test]
fn scale_plus_2_then_scale_1_each_return_once_done() {
    let (program, management) = cluster("hello", "2", &[("WIX_CLUSTER_ADMIN_TOKEN", TOKEN)]);
    let pid = program.pid().to_string();
    let env = [("WIX_CLUSTER_ADMIN_TOKEN", TOKEN)];
    let ran = run(&["scale", "+2", &pid], &env);
    assert_eq!(ran.code, Some(0), "{ran:?}");
    let (workers, ready) = live_workers(management);
    assert_eq!((workers.len(), ready), (4, true), "after scale +2: {ran:?}");
    let ran = run(&["scale", "1", "-c", &pid], &env);
    assert_eq!(ran.code, Some(0), "{ran:?}");
    let (workers, ready) = live_workers(management);
    assert_eq!((workers.len(), ready), (1, true), "after scale 1: {ran:?}");
    let ran = run(&["scale", "-5", &pid], &env);
    assert_eq!(
        ran.code,
        Some(2),
        "scaling below 1 is a usage error: {ran:?}"
    );
}

#[test]
fn upgrade_returns_once_the_new_master_serves() {
    let (program, management) = cluster("hello", "2", &[("WIX_CLUSTER_ADMIN_TOKEN", TOKEN)]);
    let ran = run(
        &["upgrade", &program.pid().to_string()],
        &[("WIX_CLUSTER_ADMIN_TOKEN", TOKEN)],
    );
    assert_eq!(ran.code, Some(0), "{ran:?}");
    let info = get_json(management, "/");
    assert_ne!(
        info["pid"],
        program.pid(),
        "the old master still answers: {ran:?}"
    );
    let ready = http_get(management, "/health/ready").map(|r| r.status).ok();
    assert_eq!(ready, Some(200));
    assert!(
        ran.stdout.contains(&format!("pid {}", info["pid"])),
        "{ran:?}"
    );
    if let Some(new) = info["pid"].as_u64() {
        send_signal(new as u32, Signal::SIGKILL);
    }
}

#[test]
fn stop_returns_once_the_master_has_exited() {
    let (mut program, _) = cluster("hello", "2", &[("WIX_CLUSTER_ADMIN_TOKEN", TOKEN)]);
    let ran = run(
        &["stop", &program.pid().to_string()],
        &[("WIX_CLUSTER_ADMIN_TOKEN", TOKEN)],
    );
    assert_eq!(ran.code, Some(0), "{ran:?}");
    // Exited already (a zombie until the test reaps it): reaped at once.
    let status = program.wait_exit(Duration::from_secs(1));
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{ran:?}");
}

#[test]
fn without_the_token_an_action_exits_4_and_the_token_shows_nowhere() {
    let scratch = Scratch::new(env!("CARGO_TARGET_TMPDIR"), "cli-token");
    let xdg = scratch.path("");
    let xdg = xdg.to_str().expect("a UTF-8 path");
    let (program, _) = cluster(
        "hello",
        "2",
        &[("WIX_CLUSTER_ADMIN_TOKEN", TOKEN), ("XDG_RUNTIME_DIR", xdg)],
    );
    let pid = program.pid().to_string();
    let env = [("XDG_RUNTIME_DIR", xdg)];
    for action in [&["roll", &pid][..], &["scale", "3", &pid], &["stop", &pid]] {
        let ran = run(action, &env);
        assert_eq!(ran.code, Some(4), "{action:?}: {ran:?}");
        assert!(ran.stderr.contains("WIX_CLUSTER_ADMIN_TOKEN"), "{ran:?}");
        let ran = run(
            action,
            &[
                ("XDG_RUNTIME_DIR", xdg),
                ("WIX_CLUSTER_ADMIN_TOKEN", "wrong"),
            ],
        );
        assert_eq!(ran.code, Some(4), "{action:?}: {ran:?}");
        assert!(ran.stderr.contains("wrong admin token"), "{ran:?}");
    }
    program.assert_workers_stay(&program.workers(), "a refused action acted");
    // The token from a file: not on the command line `ps` shows.
    let token_file = scratch.path("token").to_string_lossy().into_owned();
    std::fs::write(&token_file, format!("{TOKEN}\n")).expect("write the token file");
    let mut follow = command(
        &[],
        &["events", "-f", &pid, "--token-file", &token_file],
        &env,
    )
    .spawn()
    .expect("start events -f");
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", follow.id())).unwrap_or_default();
    let _ = follow.kill();
    let _ = follow.wait();
    assert!(!String::from_utf8_lossy(&cmdline).contains(TOKEN));
    for args in [
        &["status", &pid][..],
        &["status", &pid, "-o", "json"],
        &["ls", "-o", "json"],
    ] {
        let ran = run(
            args,
            &[("XDG_RUNTIME_DIR", xdg), ("WIX_CLUSTER_ADMIN_TOKEN", TOKEN)],
        );
        assert_eq!(ran.code, Some(0), "{ran:?}");
        assert!(
            !ran.stdout.contains(TOKEN) && !ran.stderr.contains(TOKEN),
            "{ran:?}"
        );
    }
    let file = scratch.path(&format!("wix-cluster/{pid}.json"));
    let written = std::fs::read_to_string(&file).expect("the discovery file");
    assert!(!written.contains(TOKEN));
    let ran = run(
        &[
            "scale",
            "+1",
            &pid,
            "--no-wait",
            "--token-file",
            &token_file,
        ],
        &env,
    );
    assert_eq!(ran.code, Some(0), "with --token-file: {ran:?}");
}

#[test]
fn an_unreachable_cluster_exits_3_and_bad_usage_2() {
    let ran = run(&["status", "--addr", "127.0.0.1:1"], &[]);
    assert_eq!(ran.code, Some(3), "{ran:?}");
    assert!(ran.stderr.contains("cannot reach"), "{ran:?}");
    let ran = run(
        &["status"],
        &[("WIX_CLUSTER_MANAGEMENT_ADDR", "127.0.0.1:1")],
    );
    assert_eq!(ran.code, Some(3), "{ran:?}");
    let ran = run(&["status", "-c", "no-such-cluster-here"], &[]);
    assert_eq!(ran.code, Some(3), "{ran:?}");
    let ran = run(&["status", "--addr", "not-an-address"], &[]);
    assert_eq!(ran.code, Some(2), "{ran:?}");
    let ran = run(&["frobnicate"], &[]);
    assert_eq!(ran.code, Some(2), "{ran:?}");
    for shell in ["bash", "zsh", "fish"] {
        let ran = run(&["completions", shell], &[]);
        assert_eq!(ran.code, Some(0), "{ran:?}");
        assert!(ran.stdout.contains("wix-cluster"), "{shell}: {ran:?}");
    }
}

/// The lines a running command prints, as they come, with when each came.
struct Lines {
    child: Child,
    lines: Arc<Mutex<Vec<(Instant, String)>>>,
}

impl Lines {
    fn start(args: &[&str]) -> Lines {
        let mut child = command(&[], args, &[]).spawn().expect("start wix-cluster");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().expect("piped stdout");
        let into = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                into.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((Instant::now(), line));
            }
        });
        Lines { child, lines }
    }

    /// When the first line containing every one of `needles` came; waits up to
    /// PATIENCE.
    fn wait_for(&self, needles: &[&str]) -> Instant {
        let mut at = None;
        let found = wait_until(PATIENCE, || {
            at = self
                .lines
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .find(|(_, line)| needles.iter().all(|n| line.contains(n)))
                .map(|(at, _)| *at);
            at.is_some()
        });
        let seen = self.lines.lock().unwrap_or_else(|p| p.into_inner()).clone();
        assert!(found, "no line with {needles:?} in {seen:?}");
        at.unwrap_or_else(Instant::now)
    }
}

impl Drop for Lines {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn events_follow_prints_a_kill_9_at_once_and_keeps_following_across_an_upgrade() {
    let (program, _) = cluster("hello", "2", &[]);
    let follow = Lines::start(&["events", "-f", &program.pid().to_string()]);
    follow.wait_for(&["listening"]);
    let workers = program.wait_for_steady_workers(2);
    let killed_at = Instant::now();
    send_signal(workers[0], Signal::SIGKILL);
    let printed = follow.wait_for(&["exit", &workers[0].to_string(), "SIGKILL"]);
    eprintln!(
        "the kill -9 printed {:?} after it",
        printed.duration_since(killed_at)
    );
    program.signal(Signal::SIGUSR2);
    let new_master = program.new_master_pid();
    follow.wait_for(&["took over from the old master"]);
    let new_workers = wix_cluster_suite::workers_of(new_master);
    let Some(&victim) = new_workers.first() else {
        panic!("the new master {new_master} has no workers");
    };
    send_signal(victim, Signal::SIGKILL);
    follow.wait_for(&["exit", &victim.to_string(), "SIGKILL"]);
    send_signal(new_master, Signal::SIGKILL);
}

/// A tmux server of the test's own (its own socket), killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn new(name: &str) -> Tmux {
        Tmux {
            socket: format!("wix-cli-{name}-{}", std::process::id()),
        }
    }

    fn run(&self, args: &[&str]) -> String {
        let output = Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("tmux {args:?}: {e} (apt-get install tmux)"));
        assert!(output.status.success(), "tmux {args:?}: {output:?}");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "top"])
    }

    /// Waits up to PATIENCE for the screen to pass `check`; the last screen.
    fn wait_for(&self, what: &str, check: impl Fn(&str) -> bool) -> String {
        let mut screen = String::new();
        let ok = wait_until(PATIENCE, || {
            screen = self.screen();
            check(&screen)
        });
        assert!(ok, "the screen never showed {what}:\n{screen}");
        screen
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .output();
    }
}

#[test]
fn top_in_tmux_shows_every_worker_a_kill_9_and_scales_up_after_confirming_then_q_exits_0() {
    let scratch = Scratch::new(env!("CARGO_TARGET_TMPDIR"), "cli-top");
    let token_file = scratch.path("token");
    std::fs::write(&token_file, TOKEN).expect("write the token file");
    let (program, management) = cluster("hello", "2", &[("WIX_CLUSTER_ADMIN_TOKEN", TOKEN)]);
    let workers = program.wait_for_steady_workers(2);
    let tmux = Tmux::new("top");
    // After top: its exit code, then whether the terminal is back in canonical mode.
    let script = format!(
        "{} top {} --token-file {}; echo EXIT=$?; stty -a | tr ' ' '\\n' | grep -x -e icanon -e -icanon; sleep 600",
        cli_path().display(),
        program.pid(),
        token_file.display()
    );
    tmux.run(&[
        "new-session",
        "-d",
        "-s",
        "top",
        "-x",
        "120",
        "-y",
        "40",
        &script,
    ]);
    tmux.wait_for("every worker's pid", |screen| {
        screen.contains("workers") && workers.iter().all(|w| screen.contains(&w.to_string()))
    });
    send_signal(workers[0], Signal::SIGKILL);
    let victim = workers[0].to_string();
    tmux.wait_for("the kill -9 in the events pane", |screen| {
        screen
            .lines()
            .any(|line| line.contains("exit") && line.contains(&victim) && line.contains("SIGKILL"))
    });
    tmux.run(&["send-keys", "-t", "top", "+"]);
    tmux.wait_for("the question", |screen| {
        screen.contains("Scale to 3 workers?")
    });
    let (before, _) = live_workers(management);
    assert_eq!(before.len(), 2, "scaled before confirming");
    tmux.run(&["send-keys", "-t", "top", "y"]);
    let scaled = wait_until(PATIENCE, || {
        let (now, ready) = live_workers(management);
        now.len() == 3 && ready
    });
    assert!(scaled, "not scaled to 3 after y:\n{}", tmux.screen());
    tmux.wait_for("3 of 3 ready", |screen| screen.contains("3/3 ready"));
    tmux.run(&["send-keys", "-t", "top", "q"]);
    let screen = tmux.wait_for("the exit code and the terminal's mode", |screen| {
        screen.contains("EXIT=")
            && screen
                .lines()
                .any(|line| line.trim() == "icanon" || line.trim() == "-icanon")
    });
    assert!(screen.contains("EXIT=0"), "{screen}");
    assert!(
        screen.lines().any(|line| line.trim() == "icanon"),
        "the terminal was left raw:\n{screen}"
    );
    assert!(
        !screen.contains("REQ/S"),
        "the full-screen view is still shown:\n{screen}"
    );
}
