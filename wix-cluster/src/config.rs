//! The resolved configuration: the builder's values with the environment's overrides.

mod management;

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

pub use management::{ManagementApp, ManagementAppBuilder};

/// `WIX_CLUSTER_WORKERS`: overrides the worker count.
pub const ENV_WORKERS: &str = "WIX_CLUSTER_WORKERS";
/// `WIX_CLUSTER_SINGLE`: `1` forces single-process mode, `0` forbids it.
pub const ENV_SINGLE: &str = "WIX_CLUSTER_SINGLE";
/// `WIX_CLUSTER_MANAGEMENT_ADDR`: overrides the management app's address.
pub const ENV_MANAGEMENT_ADDR: &str = "WIX_CLUSTER_MANAGEMENT_ADDR";
/// `WIX_CLUSTER_ADMIN_TOKEN`: the bearer token the management app's `POST` actions
/// require (overrides the program's; empty means none).
pub const ENV_ADMIN_TOKEN: &str = "WIX_CLUSTER_ADMIN_TOKEN";
/// `WIX_CLUSTER_DRAIN_DELAY`: how long the cluster reports not ready before its workers
/// start draining on a stop (overrides `Graceful(delay = ..)`): a duration such as
/// `500ms`, `5s`, `1m 30s` or `0`, at most 1 h. Every duration variable is read in
/// [`humantime`]'s grammar, the one the macro's plugin settings use.
pub const ENV_DRAIN_DELAY: &str = "WIX_CLUSTER_DRAIN_DELAY";
/// `WIX_CLUSTER_MAX_DRAINING`: how many old workers of one slot may drain at once
/// (overrides `Graceful(max_draining = ..)`): a whole number from 1 to 64. A roll that
/// would leave more cuts the oldest drains short.
pub const ENV_MAX_DRAINING: &str = "WIX_CLUSTER_MAX_DRAINING";
/// `WIX_CLUSTER_HARD_STOP_AFTER`: how long a stopping master (a stop, or the old master
/// of an upgrade) may take in all before it kills what is left (overrides
/// `Graceful(hard_stop_after = ..)`): a duration, more than 0, at most 1 h.
pub const ENV_HARD_STOP_AFTER: &str = "WIX_CLUSTER_HARD_STOP_AFTER";
/// What the hard stop adds to the drain delay and the drain timeout by default.
pub const HARD_STOP_MARGIN: Duration = Duration::from_secs(5);
/// How many old workers of one slot may drain at once by default.
pub const DEFAULT_MAX_DRAINING: usize = 2;
/// The most `max_draining` may be.
pub const MAX_MAX_DRAINING: usize = 64;
/// `WIX_CLUSTER_AUTOSCALE`: `min..max` (`1..8`, `2..auto`: `auto` is the CPUs this
/// process may use) turns [`crate::plugins::Autoscale`] on with those bounds, named by the
/// program or not; `off` turns it off.
pub const ENV_AUTOSCALE: &str = "WIX_CLUSTER_AUTOSCALE";
/// `WIX_CLUSTER_AUTOSCALE_MEMORY_FLOOR`: no autoscaling up while the machine has less
/// memory available than this (overrides `Autoscale(memory_floor = ..)`): bytes or a
/// size (`256MiB`, `2GiB`, `1TiB`).
pub const ENV_AUTOSCALE_MEMORY_FLOOR: &str = "WIX_CLUSTER_AUTOSCALE_MEMORY_FLOOR";
/// `WIX_CLUSTER_READY_TIMEOUT`: how long a new process may take to become ready before
/// it is given up on — a worker's successor (rolling restart, recycle) and a new master
/// with all its workers (upgrade): `500ms`, `90s` or `1m 30s`, more than 0, at most 1 h.
pub const ENV_READY_TIMEOUT: &str = "WIX_CLUSTER_READY_TIMEOUT";
/// `WIX_CLUSTER_HEADER_READ_TIMEOUT`: how long a connection to the app
/// ([`crate::http::serve`]) or the management app may take to send a whole request head
/// (`500ms`, `10s`, `1m`; more than 0, at most 1 h).
pub const ENV_HEADER_READ_TIMEOUT: &str = "WIX_CLUSTER_HEADER_READ_TIMEOUT";
/// `WIX_CLUSTER_IDLE_TIMEOUT`: how long such a connection may stay open with nothing to
/// do (`500ms`, `60s`, `1m 30s`; more than 0, at most 1 h).
pub const ENV_IDLE_TIMEOUT: &str = "WIX_CLUSTER_IDLE_TIMEOUT";
/// `WIX_CLUSTER_BODY_READ_TIMEOUT`: how long such a connection may leave the app waiting
/// for more of a request body (`500ms`, `60s`, `1m 30s`; more than 0, at most 1 h).
pub const ENV_BODY_READ_TIMEOUT: &str = "WIX_CLUSTER_BODY_READ_TIMEOUT";
/// `WIX_CLUSTER_MAX_HEADER_BYTES`: the largest request head such a connection may send
/// (HTTP/1's request line and headers; HTTP/2's header list), answered
/// `431 Request Header Fields Too Large` past it: bytes (`65536`) or a size (`64KiB`,
/// `1MiB`, `100KB`), from 8 KiB to 16 MiB.
pub const ENV_MAX_HEADER_BYTES: &str = "WIX_CLUSTER_MAX_HEADER_BYTES";
/// `WIX_CLUSTER_WATCH`: `1` turns watch mode on (the cluster upgrades itself when its
/// program file changes), `0` off.
pub const ENV_WATCH: &str = "WIX_CLUSTER_WATCH";
/// `WIX_CLUSTER_REQUEST_METRICS`: `0` turns off the request metrics of
/// [`crate::http::serve`], `1` on (overrides the program's).
pub const ENV_REQUEST_METRICS: &str = "WIX_CLUSTER_REQUEST_METRICS";
/// `WIX_CLUSTER_KEEP_WORKER_CHILDREN`: `1` leaves what a worker's app starts running
/// when that worker ends (by default its process group gets SIGTERM, then SIGKILL after
/// the drain timeout), `0` the default.
pub const ENV_KEEP_WORKER_CHILDREN: &str = "WIX_CLUSTER_KEEP_WORKER_CHILDREN";
/// `WIX_CLUSTER_MOUNT_POINT`: a path prefixing every page of the management app
/// (overrides the program's).
pub const ENV_MOUNT_POINT: &str = "WIX_CLUSTER_MOUNT_POINT";

/// `WIX_CLUSTER_MANAGEMENT_HOSTS`: the host names the management app answers to besides
/// `localhost` and IP addresses, separated by commas, `*` for any (overrides the
/// program's).
pub const ENV_MANAGEMENT_HOSTS: &str = "WIX_CLUSTER_MANAGEMENT_HOSTS";

/// `WIX_CLUSTER_ACCEPT_WAIT`: fair accepting's safety valve. A worker holding more than
/// its fair share of the cluster's open connections leaves a new connection to the
/// others, but takes it anyway once it has waited this long in the queue (`20ms` by
/// default, at most 1 h); `0` turns fair accepting off (every worker accepts whenever
/// it can, as from one shared queue without a board).
pub const ENV_ACCEPT_WAIT: &str = "WIX_CLUSTER_ACCEPT_WAIT";

/// How long a connection may wait for a worker within its fair share before one over
/// it takes the connection ([`ENV_ACCEPT_WAIT`]).
pub const DEFAULT_ACCEPT_WAIT: Duration = Duration::from_millis(20);

/// The worker count when neither the program nor the environment sets one.
pub const DEFAULT_WORKERS: usize = 2;
pub use crate::limits::MAX_WORKERS;

/// The management app's address when nothing else is set.
pub const DEFAULT_MANAGEMENT_ADDR: &str = "127.0.0.1:8084";
/// How long a stopping worker has to exit before the master kills it.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a worker's successor has to become ready unless `WIX_CLUSTER_READY_TIMEOUT`
/// says otherwise.
pub const DEFAULT_SUCCESSOR_READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a new master has to get all its workers ready unless
/// `WIX_CLUSTER_READY_TIMEOUT` says otherwise (it starts them all at once, after its
/// own start-up).
pub const DEFAULT_UPGRADE_READY_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a connection may take to send a whole request head, unless set.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a connection may stay idle (no request in flight, no byte moving), unless
/// set.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(75);
/// How long the app may wait for the next byte of a request body, unless set (nginx's
/// `client_body_timeout`).
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(60);
/// The largest request head a connection may send, unless set.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 64 * 1024;
/// The least `max_header_bytes` may be (hyper's smallest HTTP/1 read buffer).
pub const MIN_MAX_HEADER_BYTES: usize = 8 * 1024;
/// The most `max_header_bytes` may be.
pub const MAX_MAX_HEADER_BYTES: usize = 16 * 1024 * 1024;

/// When the app runs in one process instead of a master and workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SingleProcess {
    /// Single process when `WIX_CLUSTER_SINGLE=1` or a debugger is attached (default).
    #[default]
    Auto,
    /// Always one process.
    Always,
    /// Never one process, even under a debugger.
    Never,
}

/// The tokio runtime each worker runs its app on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Flavor {
    /// One thread per worker (default): the workers are the parallelism.
    #[default]
    CurrentThread,
    /// A multi-threaded runtime in every worker (`worker_threads` sets its size).
    MultiThread,
}

/// A setting that cannot be used, named with the value that was given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {setting}={value:?}: expected {expected}")]
pub struct ConfigError {
    setting: String,
    value: String,
    expected: &'static str,
}

impl ConfigError {
    fn new(setting: &str, value: impl fmt::Display, expected: &'static str) -> Self {
        ConfigError {
            setting: setting.to_owned(),
            value: value.to_string(),
            expected,
        }
    }
}

/// How many workers the program asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WorkerCount {
    Fixed(usize),
    /// As many as CPUs this process may use.
    Auto,
}

impl WorkerCount {
    /// `auto` or a whole number of workers, at least 1.
    fn parse(raw: &str) -> Option<WorkerCount> {
        match raw.trim() {
            "auto" => Some(WorkerCount::Auto),
            n => n
                .parse()
                .ok()
                .filter(|n| (1..=MAX_WORKERS).contains(n))
                .map(WorkerCount::Fixed),
        }
    }

    fn count(self) -> usize {
        match self {
            WorkerCount::Fixed(n) => n,
            // Honours CPU affinity (taskset) and cgroup v2 quotas (a container's limit).
            WorkerCount::Auto => std::thread::available_parallelism()
                .map_or(1, usize::from)
                .min(MAX_WORKERS),
        }
    }
}

/// What the builder was given, before the environment is consulted.
#[derive(Debug, Clone)]
pub(crate) struct Requested {
    pub(crate) workers: WorkerCount,
    pub(crate) single_process: SingleProcess,
    pub(crate) flavor: Flavor,
    pub(crate) worker_threads: Option<usize>,
    pub(crate) management: Option<String>,
    pub(crate) management_app: management::ManagementApp,
    pub(crate) app_version: Option<String>,
    pub(crate) watch: bool,
    pub(crate) header_read_timeout: Option<Duration>,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) body_read_timeout: Option<Duration>,
    pub(crate) max_header_bytes: Option<usize>,
    pub(crate) metrics: crate::metrics::Settings,
}

impl Default for Requested {
    fn default() -> Self {
        Requested {
            workers: WorkerCount::Fixed(DEFAULT_WORKERS),
            single_process: SingleProcess::Auto,
            flavor: Flavor::CurrentThread,
            worker_threads: None,
            management: None,
            management_app: management::ManagementApp::default(),
            app_version: None,
            watch: false,
            header_read_timeout: None,
            idle_timeout: None,
            body_read_timeout: None,
            max_header_bytes: None,
            metrics: crate::metrics::Settings::default(),
        }
    }
}

/// What `WIX_CLUSTER_AUTOSCALE` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AutoscaleEnv {
    /// `off`.
    Off,
    /// `min..max`; `max` is `None` for `auto`.
    Bounds { min: usize, max: Option<usize> },
}

/// The configuration the process runs with.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) workers: usize,
    pub(crate) single_process: bool,
    pub(crate) flavor: Flavor,
    pub(crate) worker_threads: Option<usize>,
    /// Where the management app listens.
    pub(crate) management: SocketAddr,
    /// The management app's pages, mount point, token and sampling.
    pub(crate) management_app: management::ManagementConfig,
    /// The program's version, shown by the management app (the macro passes the
    /// crate's `CARGO_PKG_VERSION`).
    pub(crate) app_version: Option<String>,
    /// `WIX_CLUSTER_DRAIN_DELAY`, when set: wins over `Graceful`'s delay.
    pub(crate) drain_delay: Option<Duration>,
    /// `WIX_CLUSTER_HARD_STOP_AFTER`, when set: wins over `Graceful`'s.
    pub(crate) hard_stop_after: Option<Duration>,
    /// `WIX_CLUSTER_MAX_DRAINING`, when set: wins over `Graceful`'s `max_draining`.
    pub(crate) max_draining: Option<usize>,
    /// `WIX_CLUSTER_AUTOSCALE`, when set.
    pub(crate) autoscale: Option<AutoscaleEnv>,
    /// `WIX_CLUSTER_AUTOSCALE_MEMORY_FLOOR`, when set.
    pub(crate) autoscale_memory_floor: Option<u64>,
    /// `WIX_CLUSTER_READY_TIMEOUT`, when set: replaces both ready timeouts.
    pub(crate) ready_timeout: Option<Duration>,
    /// Watch mode: upgrade the cluster when the program file changes.
    pub(crate) watch: bool,
    /// `WIX_CLUSTER_KEEP_WORKER_CHILDREN`: what a worker starts outlives it.
    pub(crate) keep_worker_children: bool,
    /// The timeouts of every HTTP connection we serve.
    pub(crate) timeouts: crate::connection::Timeouts,
    /// Histogram buckets and request metrics.
    pub(crate) metrics: crate::metrics::Settings,
    /// Fair accepting's safety valve; zero turns fair accepting off.
    pub(crate) accept_wait: Duration,
}

impl Config {
    /// How long a worker's successor has to become ready.
    pub(crate) fn successor_ready_timeout(&self) -> Duration {
        self.ready_timeout
            .unwrap_or(DEFAULT_SUCCESSOR_READY_TIMEOUT)
    }

    /// How long a new master has to get its workers ready.
    pub(crate) fn upgrade_ready_timeout(&self) -> Duration {
        self.ready_timeout.unwrap_or(DEFAULT_UPGRADE_READY_TIMEOUT)
    }

    /// Applies the environment (`var` reads a variable) to what the builder asked for.
    pub(crate) fn resolve(
        requested: &Requested,
        var: impl Fn(&str) -> Option<String>,
        debugger_attached: impl FnOnce() -> bool,
    ) -> Result<Config, ConfigError> {
        check_requested(requested)?;
        let workers = from_env(&var, ENV_WORKERS, worker_count)?
            .unwrap_or(requested.workers)
            .count();
        let single_process = match from_env(&var, ENV_SINGLE, flag)? {
            Some(single) => single,
            None => match requested.single_process {
                SingleProcess::Always => true,
                SingleProcess::Never => false,
                SingleProcess::Auto => debugger_attached(),
            },
        };
        let management = match from_env(&var, ENV_MANAGEMENT_ADDR, address)? {
            Some(addr) => addr,
            None => read(
                "management",
                requested
                    .management
                    .as_deref()
                    .unwrap_or(DEFAULT_MANAGEMENT_ADDR),
                address,
            )?,
        };
        let management_app = resolve_management_app(&requested.management_app, &var)?;
        let timeout = |env, setting, requested: Option<Duration>, default| match from_env(
            &var,
            env,
            positive_delay,
        )? {
            Some(timeout) => Ok(timeout),
            None if requested.is_some_and(|timeout| timeout.is_zero()) => {
                Err(ConfigError::new(setting, "0s", "more than 0"))
            }
            None => Ok(requested.unwrap_or(default)),
        };
        Ok(Config {
            workers,
            single_process,
            flavor: requested.flavor,
            worker_threads: requested.worker_threads,
            management,
            management_app,
            app_version: requested.app_version.clone(),
            drain_delay: from_env(&var, ENV_DRAIN_DELAY, delay)?,
            max_draining: from_env(&var, ENV_MAX_DRAINING, draining_count)?,
            autoscale: from_env(&var, ENV_AUTOSCALE, autoscale_bounds)?,
            autoscale_memory_floor: from_env(&var, ENV_AUTOSCALE_MEMORY_FLOOR, memory_bytes)?,
            hard_stop_after: from_env(&var, ENV_HARD_STOP_AFTER, positive_delay)?,
            ready_timeout: from_env(&var, ENV_READY_TIMEOUT, positive_delay)?,
            watch: from_env(&var, ENV_WATCH, flag)?.unwrap_or(requested.watch),
            keep_worker_children: from_env(&var, ENV_KEEP_WORKER_CHILDREN, flag)?.unwrap_or(false),
            timeouts: crate::connection::Timeouts {
                header_read: timeout(
                    ENV_HEADER_READ_TIMEOUT,
                    "header_read_timeout",
                    requested.header_read_timeout,
                    DEFAULT_HEADER_READ_TIMEOUT,
                )?,
                idle: timeout(
                    ENV_IDLE_TIMEOUT,
                    "idle_timeout",
                    requested.idle_timeout,
                    DEFAULT_IDLE_TIMEOUT,
                )?,
                body_read: timeout(
                    ENV_BODY_READ_TIMEOUT,
                    "body_read_timeout",
                    requested.body_read_timeout,
                    DEFAULT_BODY_READ_TIMEOUT,
                )?,
                max_header_bytes: match from_env(&var, ENV_MAX_HEADER_BYTES, header_bytes)? {
                    Some(bytes) => bytes,
                    None => {
                        let bytes = requested
                            .max_header_bytes
                            .unwrap_or(DEFAULT_MAX_HEADER_BYTES);
                        if !(MIN_MAX_HEADER_BYTES..=MAX_MAX_HEADER_BYTES).contains(&bytes) {
                            return Err(ConfigError::new(
                                "max_header_bytes",
                                bytes,
                                HEADER_BYTES_EXPECTED,
                            ));
                        }
                        bytes
                    }
                },
            },
            metrics: crate::metrics::Settings {
                requests: from_env(&var, ENV_REQUEST_METRICS, flag)?
                    .unwrap_or(requested.metrics.requests),
                buckets: requested.metrics.buckets.clone(),
            },
            accept_wait: from_env(&var, ENV_ACCEPT_WAIT, delay)?.unwrap_or(DEFAULT_ACCEPT_WAIT),
        })
    }
}

/// The checks on what the program asked for that no variable overrides.
fn check_requested(requested: &Requested) -> Result<(), ConfigError> {
    if let WorkerCount::Fixed(n) = requested.workers {
        if n == 0 || n > MAX_WORKERS {
            return Err(ConfigError::new("workers", n, "at least 1, at most 1024"));
        }
    }
    let bounds = &requested.metrics.buckets;
    if bounds.is_empty()
        || bounds.len() > crate::metrics::MAX_BUCKETS
        || bounds.iter().any(|b| !b.is_finite())
        || bounds.windows(2).any(|w| w[0] >= w[1])
    {
        return Err(ConfigError::new(
            "histogram_buckets",
            format!("{bounds:?}"),
            "at most 64 finite bounds in increasing order",
        ));
    }
    if requested.worker_threads == Some(0) {
        return Err(ConfigError::new("worker_threads", 0, "at least 1"));
    }
    Ok(())
}

/// Reads a setting's text (trimmed): its value, or what was expected instead.
type Read<T> = fn(&str) -> Result<T, &'static str>;

/// `raw`, the text of `setting`, read by `read`; an error names the setting and the text.
fn read<T>(setting: &str, raw: &str, read: Read<T>) -> Result<T, ConfigError> {
    read(raw.trim()).map_err(|expected| ConfigError::new(setting, raw, expected))
}

/// The variable `env` read by `read`, when it is set (the caller falls back on the
/// program's value when it is not).
fn from_env<T>(
    var: impl Fn(&str) -> Option<String>,
    env: &'static str,
    read: Read<T>,
) -> Result<Option<T>, ConfigError> {
    var(env).map(|raw| self::read(env, &raw, read)).transpose()
}

/// `1` or `0`.
fn flag(raw: &str) -> Result<bool, &'static str> {
    match raw {
        "1" => Ok(true),
        "0" => Ok(false),
        _ => Err("1 or 0"),
    }
}

/// `auto` or a whole number of workers.
fn worker_count(raw: &str) -> Result<WorkerCount, &'static str> {
    WorkerCount::parse(raw).ok_or("a whole number of workers from 1 to 1024, or auto")
}

/// How many old workers of a slot may drain at once: 1 to [`MAX_MAX_DRAINING`].
fn draining_count(raw: &str) -> Result<usize, &'static str> {
    raw.parse()
        .ok()
        .filter(|n| (1..=MAX_MAX_DRAINING).contains(n))
        .ok_or("a whole number from 1 to 64")
}

/// Whether `WIX_CLUSTER_AUTOSCALE` says `off` (as `var` reads the environment).
pub(crate) fn autoscale_is_off(var: impl Fn(&str) -> Option<String>) -> bool {
    var(ENV_AUTOSCALE).is_some_and(|raw| autoscale_bounds(&raw) == Ok(AutoscaleEnv::Off))
}

/// `min..max` or `off`.
fn autoscale_bounds(raw: &str) -> Result<AutoscaleEnv, &'static str> {
    const EXPECTED: &str = "min..max (like 1..8 or 2..auto, from 1 to 1024) or off";
    if raw.trim() == "off" {
        return Ok(AutoscaleEnv::Off);
    }
    let (min, max) = raw.split_once("..").ok_or(EXPECTED)?;
    let count = |raw: &str| {
        raw.trim()
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_WORKERS).contains(n))
    };
    let min = count(min).ok_or(EXPECTED)?;
    let max = match max.trim() {
        "auto" => None,
        max => Some(count(max).filter(|max| *max >= min).ok_or(EXPECTED)?),
    };
    Ok(AutoscaleEnv::Bounds { min, max })
}

/// Bytes, or a size in B, KB, MB, GB, KiB, MiB, GiB or TiB.
fn memory_bytes(raw: &str) -> Result<u64, &'static str> {
    const UNITS: [(&str, u64); 9] = [
        ("", 1),
        ("B", 1),
        ("KB", 1000),
        ("MB", 1000 * 1000),
        ("GB", 1000 * 1000 * 1000),
        ("KiB", 1 << 10),
        ("MiB", 1 << 20),
        ("GiB", 1 << 30),
        ("TiB", 1 << 40),
    ];
    let raw = raw.trim();
    let digits = raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len());
    let (number, unit) = raw.split_at(digits);
    let unit = unit.trim();
    number
        .parse::<u64>()
        .ok()
        .zip(UNITS.iter().find(|(name, _)| *name == unit))
        .and_then(|(number, (_, scale))| number.checked_mul(*scale))
        .ok_or("bytes or a size such as 256MiB, 2GiB or 1TiB")
}

/// An IP address and a port.
fn address(raw: &str) -> Result<SocketAddr, &'static str> {
    raw.parse().map_err(|_| "an address such as 127.0.0.1:8084")
}

/// The longest duration a `WIX_CLUSTER_*` variable may set.
const MAX_ENV_DURATION: Duration = Duration::from_secs(3600);

/// A duration in [`humantime`]'s grammar (`500ms`, `1.5s`, `1m 30s`, `0`; the macro's
/// plugin settings use the same), at most an hour.
fn delay(raw: &str) -> Result<Duration, &'static str> {
    humantime::parse_duration(raw)
        .ok()
        .filter(|delay| *delay <= MAX_ENV_DURATION)
        .ok_or("a duration such as 500ms, 5s or 1m 30s, at most 1h")
}

/// A [`delay`] of more than 0.
fn positive_delay(raw: &str) -> Result<Duration, &'static str> {
    delay(raw)
        .ok()
        .filter(|delay| !delay.is_zero())
        .ok_or("a duration such as 500ms, 30s or 1m 30s, more than 0, at most 1h")
}

/// What [`header_bytes`] expects.
const HEADER_BYTES_EXPECTED: &str =
    "bytes (65536) or a size such as 64KiB or 1MiB, from 8KiB to 16MiB";

/// A number of bytes, with a unit or not (`65536`, `64KiB`, `64 KiB`, `100KB`, `1MiB`),
/// from [`MIN_MAX_HEADER_BYTES`] to [`MAX_MAX_HEADER_BYTES`].
fn header_bytes(raw: &str) -> Result<usize, &'static str> {
    const UNITS: [(&str, usize); 7] = [
        ("", 1),
        ("B", 1),
        ("KB", 1000),
        ("MB", 1000 * 1000),
        ("KiB", 1024),
        ("MiB", 1024 * 1024),
        ("GiB", 1024 * 1024 * 1024),
    ];
    let digits = raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len());
    let (number, unit) = raw.split_at(digits);
    let unit = unit.trim();
    number
        .parse::<usize>()
        .ok()
        .zip(UNITS.iter().find(|(name, _)| *name == unit))
        .and_then(|(number, (_, scale))| number.checked_mul(*scale))
        .filter(|bytes| (MIN_MAX_HEADER_BYTES..=MAX_MAX_HEADER_BYTES).contains(bytes))
        .ok_or(HEADER_BYTES_EXPECTED)
}

/// The management app's settings with the environment's overrides applied.
fn resolve_management_app(
    app: &management::ManagementApp,
    var: impl Fn(&str) -> Option<String>,
) -> Result<management::ManagementConfig, ConfigError> {
    use management::{
        DEFAULT_SAMPLE_INTERVAL, check_host, check_hosts, check_sample_interval,
        normalize_admin_token, normalize_mount_point,
    };
    let mount_point = match from_env(&var, ENV_MOUNT_POINT, normalize_mount_point)? {
        Some(mount_point) => mount_point,
        None => read(
            "management mount_point",
            app.mount_point.as_deref().unwrap_or_default(),
            normalize_mount_point,
        )?,
    };
    let admin_token = var(ENV_ADMIN_TOKEN)
        .or_else(|| app.admin_token.clone())
        .and_then(|token| normalize_admin_token(&token));
    let hosts = match from_env(&var, ENV_MANAGEMENT_HOSTS, check_hosts)? {
        Some(hosts) => hosts,
        None => app
            .hosts
            .iter()
            .map(|name| read("management host", name, check_host))
            .collect::<Result<_, _>>()?,
    };
    let sample_interval = app.sample_interval.unwrap_or(DEFAULT_SAMPLE_INTERVAL);
    let sample_interval = check_sample_interval(sample_interval).map_err(|expected| {
        ConfigError::new(
            "management sample_interval",
            format!("{sample_interval:?}"),
            expected,
        )
    })?;
    Ok(management::ManagementConfig {
        pages: app.pages.clone(),
        mount_point,
        admin_token,
        sample_interval,
        hosts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::resolve(
            &Requested::default(),
            |name| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()),
            || false,
        )
    }

    #[test]
    fn defaults_are_two_workers_multi_process_and_the_original_management_port() {
        let config = resolve(&[]).unwrap();
        assert_eq!(config.workers, 2);
        assert!(!config.single_process);
        assert_eq!(config.management.to_string(), "127.0.0.1:8084");
    }

    #[test]
    fn env_overrides_the_worker_count() {
        assert_eq!(resolve(&[(ENV_WORKERS, "7")]).unwrap().workers, 7);
    }

    #[test]
    fn connection_timeouts_default_come_from_the_environment_and_reject_zero() {
        let config = resolve(&[]).unwrap();
        assert_eq!(config.timeouts.header_read, DEFAULT_HEADER_READ_TIMEOUT);
        assert_eq!(config.timeouts.idle, DEFAULT_IDLE_TIMEOUT);
        assert_eq!(config.timeouts.body_read, DEFAULT_BODY_READ_TIMEOUT);
        let config = resolve(&[
            (ENV_HEADER_READ_TIMEOUT, "2s"),
            (ENV_IDLE_TIMEOUT, "500ms"),
            (ENV_BODY_READ_TIMEOUT, "1m 30s"),
        ])
        .unwrap();
        assert_eq!(config.timeouts.header_read, Duration::from_secs(2));
        assert_eq!(config.timeouts.idle, Duration::from_millis(500));
        assert_eq!(config.timeouts.body_read, Duration::from_secs(90));
        for bad in ["0", "0s", "soon", "2h"] {
            assert!(resolve(&[(ENV_IDLE_TIMEOUT, bad)]).is_err(), "{bad}");
            assert!(resolve(&[(ENV_HEADER_READ_TIMEOUT, bad)]).is_err(), "{bad}");
            let err = resolve(&[(ENV_BODY_READ_TIMEOUT, bad)])
                .expect_err(bad)
                .to_string();
            assert!(err.contains("WIX_CLUSTER_BODY_READ_TIMEOUT"), "{err}");
        }
        for requested in [
            Requested {
                idle_timeout: Some(Duration::ZERO),
                ..Requested::default()
            },
            Requested {
                body_read_timeout: Some(Duration::ZERO),
                ..Requested::default()
            },
        ] {
            assert!(Config::resolve(&requested, |_| None, || false).is_err());
        }
    }

    #[test]
    fn max_header_bytes_defaults_to_64_kib_reads_sizes_and_rejects_the_rest() {
        let bytes = |raw: &str| {
            resolve(&[(ENV_MAX_HEADER_BYTES, raw)]).map(|c| c.timeouts.max_header_bytes)
        };
        assert_eq!(
            resolve(&[]).unwrap().timeouts.max_header_bytes,
            DEFAULT_MAX_HEADER_BYTES
        );
        assert_eq!(bytes("65536"), Ok(65536));
        assert_eq!(bytes(" 16KiB "), Ok(16384));
        assert_eq!(bytes("100 KB"), Ok(100_000));
        assert_eq!(bytes("1MiB"), Ok(1 << 20));
        assert_eq!(bytes("16MiB"), Ok(16 << 20));
        for bad in [
            "", "8191", "4KiB", "17MiB", "1GiB", "64kib", "-1", "1.5KiB", "big", "64 K",
        ] {
            let err = bytes(bad).expect_err(bad).to_string();
            assert!(err.contains("WIX_CLUSTER_MAX_HEADER_BYTES"), "{err}");
        }
        let requested = Requested {
            max_header_bytes: Some(1024),
            ..Requested::default()
        };
        let err = Config::resolve(&requested, |_| None, || false).unwrap_err();
        assert!(err.to_string().contains("max_header_bytes"), "{err}");
    }

    #[test]
    fn watch_mode_comes_from_the_environment_then_the_program() {
        assert!(!resolve(&[]).unwrap().watch);
        assert!(resolve(&[(ENV_WATCH, "1")]).unwrap().watch);
        let requested = Requested {
            watch: true,
            ..Requested::default()
        };
        assert!(
            Config::resolve(&requested, |_| None, || false)
                .unwrap()
                .watch
        );
        assert!(
            !Config::resolve(
                &requested,
                |n| (n == ENV_WATCH).then(|| "0".into()),
                || false
            )
            .unwrap()
            .watch
        );
        let err = resolve(&[(ENV_WATCH, "yes")]).unwrap_err().to_string();
        assert!(err.contains("WIX_CLUSTER_WATCH"), "{err}");
    }

    #[test]
    fn auto_is_the_cpus_this_process_may_use() {
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        assert_eq!(resolve(&[(ENV_WORKERS, "auto")]).unwrap().workers, cpus);
        let requested = Requested {
            workers: WorkerCount::Auto,
            ..Requested::default()
        };
        let config = Config::resolve(&requested, |_| None, || false).unwrap();
        assert_eq!(config.workers, cpus);
    }

    #[test]
    fn bad_worker_counts_name_the_variable_and_the_value() {
        for bad in ["abc", "0", "-1", "", "1025", "99999999999999999999"] {
            let err = resolve(&[(ENV_WORKERS, bad)]).unwrap_err().to_string();
            assert!(err.contains("WIX_CLUSTER_WORKERS"), "{err}");
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn single_process_follows_env_then_policy_then_debugger() {
        assert!(resolve(&[(ENV_SINGLE, "1")]).unwrap().single_process);
        assert!(resolve(&[(ENV_SINGLE, "yes")]).is_err());
        let requested = Requested {
            single_process: SingleProcess::Never,
            ..Requested::default()
        };
        assert!(
            !Config::resolve(&requested, |_| None, || true)
                .unwrap()
                .single_process
        );
        assert!(
            Config::resolve(&Requested::default(), |_| None, || true)
                .unwrap()
                .single_process
        );
    }

    #[test]
    fn bad_management_address_is_rejected() {
        assert!(resolve(&[(ENV_MANAGEMENT_ADDR, "nowhere")]).is_err());
    }

    #[test]
    fn management_app_settings_come_from_the_environment_first() {
        let config = resolve(&[]).unwrap();
        assert_eq!(config.management_app.mount_point, "");
        assert_eq!(config.management_app.admin_token, None);
        let config = resolve(&[(ENV_MOUNT_POINT, "/admin/"), (ENV_ADMIN_TOKEN, "t0k")]).unwrap();
        assert_eq!(config.management_app.mount_point, "/admin");
        assert_eq!(config.management_app.admin_token.as_deref(), Some("t0k"));
        // An empty token is no token: the actions stay disabled.
        let config = resolve(&[(ENV_ADMIN_TOKEN, "")]).unwrap();
        assert_eq!(config.management_app.admin_token, None);
        let err = resolve(&[(ENV_MOUNT_POINT, "admin")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("WIX_CLUSTER_MOUNT_POINT"), "{err}");
    }

    #[test]
    fn autoscale_is_bounds_or_off_and_its_floor_a_size() {
        let bounds = |raw: &str| resolve(&[(ENV_AUTOSCALE, raw)]).map(|c| c.autoscale);
        assert_eq!(
            bounds("1..8"),
            Ok(Some(AutoscaleEnv::Bounds {
                min: 1,
                max: Some(8)
            }))
        );
        assert_eq!(
            bounds("2..auto"),
            Ok(Some(AutoscaleEnv::Bounds { min: 2, max: None }))
        );
        assert_eq!(bounds("off"), Ok(Some(AutoscaleEnv::Off)));
        for bad in ["8..2", "0..4", "1..", "4", "1..9999", "a..b"] {
            let error = bounds(bad).unwrap_err().to_string();
            assert!(error.contains("WIX_CLUSTER_AUTOSCALE"), "{bad}: {error}");
        }
        let floor = |raw: &str| {
            resolve(&[(ENV_AUTOSCALE_MEMORY_FLOOR, raw)]).map(|c| c.autoscale_memory_floor)
        };
        assert_eq!(floor("1TiB"), Ok(Some(1 << 40)));
        assert_eq!(floor("512"), Ok(Some(512)));
        assert!(floor("lots").is_err());
        assert_eq!(resolve(&[]).map(|c| c.autoscale), Ok(None));
    }

    #[test]
    fn max_draining_is_a_whole_number_from_1_to_64() {
        let max = |raw: &str| resolve(&[(ENV_MAX_DRAINING, raw)]).map(|c| c.max_draining);
        assert_eq!(max("1"), Ok(Some(1)));
        assert_eq!(max("64"), Ok(Some(64)));
        for bad in ["0", "65", "-1", "two", ""] {
            assert!(max(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(resolve(&[]).map(|c| c.max_draining), Ok(None));
    }

    #[test]
    fn drain_delay_is_a_humantime_duration_of_at_most_an_hour() {
        let delay = |raw: &str| resolve(&[(ENV_DRAIN_DELAY, raw)]).map(|c| c.drain_delay);
        assert_eq!(delay("500ms"), Ok(Some(Duration::from_millis(500))));
        assert_eq!(delay(" 5s "), Ok(Some(Duration::from_secs(5))));
        assert_eq!(delay("0"), Ok(Some(Duration::ZERO)));
        assert_eq!(delay("1.5s"), Ok(Some(Duration::from_millis(1500))));
        assert_eq!(delay("1m 30s"), Ok(Some(Duration::from_secs(90))));
        assert_eq!(delay("1h"), Ok(Some(Duration::from_secs(3600))));
        assert_eq!(resolve(&[]).map(|c| c.drain_delay), Ok(None));
        for bad in [
            "5",
            "five s",
            "-1s",
            "2h",
            "7200s",
            "1h 1s",
            "0.5ns",
            "5 parsecs",
            "",
        ] {
            let err = delay(bad).expect_err(bad).to_string();
            assert!(err.contains("WIX_CLUSTER_DRAIN_DELAY"), "{err}");
        }
    }

    #[test]
    fn ready_timeout_replaces_both_defaults_and_rejects_zero_and_the_rest() {
        let config = resolve(&[]).unwrap();
        assert_eq!(config.successor_ready_timeout(), Duration::from_secs(30));
        assert_eq!(config.upgrade_ready_timeout(), Duration::from_secs(60));
        let config = resolve(&[(ENV_READY_TIMEOUT, "90s")]).unwrap();
        assert_eq!(config.successor_ready_timeout(), Duration::from_secs(90));
        assert_eq!(config.upgrade_ready_timeout(), Duration::from_secs(90));
        let config = resolve(&[(ENV_READY_TIMEOUT, "500ms")]).unwrap();
        assert_eq!(config.successor_ready_timeout(), Duration::from_millis(500));
        for bad in ["0", "0s", "0ms", "30", "2h", "soon", ""] {
            let err = resolve(&[(ENV_READY_TIMEOUT, bad)])
                .expect_err(bad)
                .to_string();
            assert!(err.contains("WIX_CLUSTER_READY_TIMEOUT"), "{err}");
        }
    }

    #[test]
    fn accept_wait_defaults_to_20ms_and_0_turns_fair_accepting_off() {
        let wait = |env: &[(&str, &str)]| resolve(env).map(|c| c.accept_wait);
        assert_eq!(wait(&[]), Ok(DEFAULT_ACCEPT_WAIT));
        assert_eq!(wait(&[(ENV_ACCEPT_WAIT, "0")]), Ok(Duration::ZERO));
        assert_eq!(wait(&[(ENV_ACCEPT_WAIT, "5s")]), Ok(Duration::from_secs(5)));
        for bad in ["20", "2h", "soon", ""] {
            let err = wait(&[(ENV_ACCEPT_WAIT, bad)]).expect_err(bad).to_string();
            assert!(err.contains("WIX_CLUSTER_ACCEPT_WAIT"), "{err}");
        }
    }
}
