//! Attribute macros of [wix-cluster](https://docs.rs/wix-cluster). Use them through the
//! `wix_cluster` crate (`#[wix_cluster::main]`): the code they generate names
//! `::wix_cluster` and nothing else.

mod attr;
mod errors;
mod exchange;
mod expand;
mod units;

use proc_macro::TokenStream;

/// Runs `async fn main(worker)` as a cluster: one master process that keeps `workers`
/// worker processes running, each of them running `main` on its own Tokio runtime.
///
/// ```ignore
/// #[wix_cluster::main(workers = 4, plugins(Respawn, Graceful))]
/// async fn main(worker: wix_cluster::Worker) -> std::io::Result<()> {
///     // Runs in every worker; the listeners it opens are shared by all workers.
///     Ok(())
/// }
/// ```
///
/// The function must be `async fn main` with exactly one argument, the
/// [`Worker`](https://docs.rs/wix-cluster/latest/wix_cluster/struct.Worker.html), and
/// return `()` or `Result<(), E>` where `E: Display` (an `Err` ends the worker with its
/// message). The macro turns it into a plain `fn main() -> std::process::ExitCode` that
/// hands it to `Cluster::builder()`, one builder call per argument given.
///
/// # Arguments
///
/// All are optional and given at most once, in any order.
///
/// - **`workers = N`**: how many worker processes the master keeps running; an integer
///   literal, at least 1. Default: 2. The `WIX_CLUSTER_WORKERS` environment variable
///   overrides it.
///
/// - **`plugins(P, Q(key = value, ...), ...)`**: the plugins, whose hooks run in the
///   order listed. Default: none. Each entry is a type implementing `Default` and
///   `wix_cluster::Plugin`, and each `key = value` calls the method `key` with `value` on
///   its default value: `Respawn(max_deaths = 5)` is `Respawn::default().max_deaths(5)`.
///   The bare names `Respawn`, `Graceful`, `LifecycleLog`, `Stall` and `Statsd` are the
///   built-in plugins, with no `use` needed; any other path, such as
///   `my_mod::MyPlugin`, names a type in scope (write `self::Respawn` for a type of your
///   own that has a built-in's name, and use a type alias for a generic type). Each
///   plugin may be listed once.
///
///   A value is passed as written, with one exception: a string literal that starts
///   with a digit, `-`, `+` or `.` is a duration or a size, checked and computed at
///   compile time.
///
///   - A **duration** is written in [humantime](https://docs.rs/humantime)'s grammar,
///     the same as the `WIX_CLUSTER_*` duration variables: one or more numbers (integer
///     or decimal), each followed by a unit, spaces allowed between them. Units: `ns`,
///     `us` (or `µs`), `ms`, `s` (or `sec`), `m` (or `min`), `h`, `d`, `w`, and their
///     longer names (`seconds`, `hours`, ...). `within = "30s"` becomes
///     `within(::core::time::Duration::from_nanos(30000000000))`; `"1.5s"`, `"500ms"`,
///     `"1m 30s"` and `"1h"` work the same way. It must be a whole number of nanoseconds
///     and at most `u64::MAX` of them (about 584 years).
///   - A **size** is an integer, optional spaces, and a unit: `B`, `KB`, `MB`, `GB`
///     (powers of 1000) or `KiB`, `MiB`, `GiB`, `TiB` (powers of 1024). `max_rss =
///     "512MiB"` becomes `max_rss(536870912_u64)`. It must be at most `u64::MAX` bytes.
///
///   Units are case-sensitive (`m` is minutes, `M` months, `MB` megabytes), zero is
///   allowed, and a negative value or anything else (`"30x"`, `"5"`, `"1.5GB"`) is a
///   compile error at the literal. Other strings (`"localhost:9090"`, and IP or socket addresses such as
///   `"127.0.0.1:9090"`) and other expressions (`Duration::from_secs(30)`, `5`) are
///   passed as written.
///
/// - **`single_process = "auto" | "always" | "never"`**: whether to run the plugins and
///   `main` in this one process instead of a master and workers: `"auto"` does so when
///   `WIX_CLUSTER_SINGLE=1` or a debugger is attached, `"always"` always, `"never"`
///   never. Default: `"auto"`. `WIX_CLUSTER_SINGLE=1` (or `0`) overrides it.
///
/// - **`flavor = "current_thread" | "multi_thread"`**: the Tokio runtime each worker
///   runs `main` on. Default: `"current_thread"`, one thread per worker, the workers
///   being the parallelism.
///
/// - **`worker_threads = N`**: how many threads each worker's runtime has; an integer
///   literal, at least 1, allowed only with `flavor = "multi_thread"`. Default: Tokio's,
///   one per CPU core.
///
/// - **`management = "ip:port"`**: where the master serves the management app (health,
///   workers, stats, metrics, dashboard); a string literal checked at compile time to be
///   an IP address and a port (`"0.0.0.0:9090"`, port 0 for any). Default:
///   `"127.0.0.1:8084"`. `WIX_CLUSTER_MANAGEMENT_ADDR` overrides it.
///
/// - **`management_page = path::to::function`**: a function taking nothing and
///   returning an `axum::Router`, whose routes the management app serves beside its
///   built-in pages: `.management_app(ManagementApp::builder().page(function()).build())`.
///   It is called once at start-up, in every process; only the master serves it.
///   Default: none.
///
/// The expansion also passes the crate's `CARGO_PKG_VERSION` to the builder
/// (`app_version`), which the management app shows.
///
/// ```ignore
/// use std::time::Duration;
///
/// #[wix_cluster::main(
///     workers = 4,
///     plugins(
///         Respawn(max_deaths = 5, within = "30s"),
///         Graceful(timeout = Duration::from_millis(7500)),
///         my_plugins::Metrics,
///     ),
///     single_process = "never",
///     flavor = "multi_thread",
///     worker_threads = 2,
///     management = "127.0.0.1:9090",
///     management_page = admin_pages,
/// )]
/// async fn main(worker: wix_cluster::Worker) -> std::io::Result<()> {
///     Ok(())
/// }
///
/// fn admin_pages() -> axum::Router {
///     axum::Router::new().route("/custom", axum::routing::get(|| async { "custom" }))
/// }
/// ```
///
/// # Compile errors
///
/// Every mistake is reported in the same compile, pointing at what is wrong: an unknown
/// or repeated argument, a value of the wrong kind (`workers = "4"`), `workers = 0`, an
/// unknown `flavor` or `single_process`, `worker_threads` without
/// `flavor = "multi_thread"`, a `management` string that is not an IP address and a
/// port, a `management_page` that is not a function's name, a plugin listed twice, a
/// plugin setting's string that starts like a number but is not a duration or a size,
/// and a function that is not `async fn main` with one argument. A plugin setting that
/// does not exist is reported by rustc as a missing method, at the setting's name.
#[proc_macro_attribute]
pub fn main(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::main(args.into(), item.into()).into()
}

/// Makes a struct or enum a typed message on a topic:
/// `#[wix_cluster::exchange("topic")]` or `#[wix_cluster::exchange("topic", response = Type)]`.
///
/// It derives `Serialize` and `Deserialize` (through `wix_cluster`, so the program needs
/// no serde dependency of its own; do not derive them yourself as well), implements
/// `wix_cluster::Exchange` with the topic, and adds these associated functions:
///
/// | call | where | does |
/// |---|---|---|
/// | `msg.send()` | worker | to the master's subscribers of the topic |
/// | `T::subscribe()` | both | a `Subscription<T>`: `recv().await` gives `(Peer, T)` |
/// | `T::broadcast(msg)` | master | to every worker, and the master's own subscribers |
/// | `T::send_to(worker, msg)` | master | to one worker |
/// | `T::request(query).await` | worker | the master's answer (`response` type, default `T`), or a timeout error after 1000 ms |
/// | `T::request_within(query, timeout).await` | worker | the same with another timeout |
/// | `T::handle(handler)` | master | the topic's one request handler: an `async` closure from `(Peer, T)` to the answer |
///
/// In single-process mode all of them work inside the one process. Topics are isolated;
/// two types on one topic is a compile error (a symbol defined twice), or a link error
/// when the two are in different crates. The type may not be generic.
///
/// ```ignore
/// #[wix_cluster::exchange("management.app")]
/// struct ReqPerSecond {
///     value: u64,
/// }
///
/// // in a worker:  ReqPerSecond { value: 10 }.send()?;
/// // in master:    let mut from_workers = ReqPerSecond::subscribe()?;
/// //               while let Some((from, msg)) = from_workers.recv().await { .. }
/// ```
#[proc_macro_attribute]
pub fn exchange(args: TokenStream, item: TokenStream) -> TokenStream {
    exchange::exchange(args.into(), item.into()).into()
}
