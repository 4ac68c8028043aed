//! gRPC through the cluster (`examples/grpc.rs`, a tonic service served by
//! `http::serve`), with tonic's own client: unary calls at full speed through a rolling
//! restart and a master upgrade fail none; a server-streaming call still running at a
//! draining worker's drain timeout ends with the status UNAVAILABLE, not a transport
//! error; tonic-health says NOT_SERVING on a worker from the moment it drains.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nix::sys::signal::Signal;
use tonic::Code;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use wix_cluster_suite::{PATIENCE, Program, is_alive, wait_until};

mod pb {
    tonic::include_proto!("echo");
}

use pb::echo_client::EchoClient;
use pb::{CountRequest, SayRequest};

/// The `grpc` example with 2 workers on a free loopback port, and `env`.
fn grpc(env: &[(&str, &str)]) -> Program {
    let mut all = vec![
        ("HOST", "127.0.0.1"),
        ("PORT", "0"),
        ("WIX_CLUSTER_WORKERS", "2"),
    ];
    all.extend_from_slice(env);
    Program::start("grpc", &all)
}

/// A channel (one HTTP/2 connection, made again when it closes) to `addr`.
async fn channel(addr: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .expect("a valid uri")
        .connect_timeout(Duration::from_secs(10))
        .connect()
        .await
        .expect("connect to the gRPC port")
}

/// What the callers of a [`Calls`] saw.
#[derive(Debug, Default)]
struct CallReport {
    ok: u64,
    failed: Vec<String>,
    /// Calls made again because the first attempt never left the client.
    retried: u64,
    served_by: HashSet<u32>,
}

/// Whether a call failed without the server having processed it, which makes it safe
/// to make again: hyper had it queued for a connection that closed first (`Canceled`),
/// or HTTP/2 refused it by a GOAWAY (the server's `NO_ERROR` GOAWAY arrived before the
/// stream could open, or named a last stream below it). gRPC's transparent retry is for
/// exactly these, but tonic's `Channel` does not do it, so the callers do, as a tonic
/// app should (see docs/guide.md).
fn never_sent(status: &tonic::Status) -> bool {
    let mut source = std::error::Error::source(status);
    while let Some(error) = source {
        if let Some(hyper) = error.downcast_ref::<hyper::Error>()
            && hyper.is_canceled()
        {
            return true;
        }
        if let Some(h2) = error.downcast_ref::<h2::Error>() {
            return h2.is_go_away() && h2.is_remote() && h2.reason() == Some(h2::Reason::NO_ERROR);
        }
        source = error.source();
    }
    false
}

/// At most this many attempts per call (a retry only for [`never_sent`]).
const ATTEMPTS: u32 = 3;

/// Unary `Say` calls back to back, as fast as they are answered, from `callers` tasks on
/// each of `channels` channels, until stopped.
struct Calls {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<CallReport>>,
}

impl Calls {
    async fn start(addr: SocketAddr, channels: usize, callers: usize) -> Calls {
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for _ in 0..channels {
            let channel = channel(addr).await;
            for _ in 0..callers {
                let mut client = EchoClient::new(channel.clone());
                let stop = stop.clone();
                tasks.push(tokio::spawn(async move {
                    let mut report = CallReport::default();
                    while !stop.load(Ordering::Relaxed) {
                        for attempt in 1..=ATTEMPTS {
                            let request = SayRequest {
                                message: "hi".to_owned(),
                            };
                            match client.say(request).await {
                                Ok(reply) => {
                                    let reply = reply.into_inner();
                                    assert_eq!(reply.message, "hi");
                                    report.ok += 1;
                                    report.served_by.insert(reply.worker_pid);
                                }
                                Err(status) if never_sent(&status) && attempt < ATTEMPTS => {
                                    report.retried += 1;
                                    continue;
                                }
                                Err(status) => report.failed.push(format!("{status:?}")),
                            }
                            break;
                        }
                    }
                    report
                }));
            }
        }
        Calls { stop, tasks }
    }

    /// Stops the callers and adds up what they saw.
    async fn stop(self) -> CallReport {
        self.stop.store(true, Ordering::Relaxed);
        let mut total = CallReport::default();
        for task in self.tasks {
            let report = task.await.expect("a caller task");
            total.ok += report.ok;
            total.failed.extend(report.failed);
            total.retried += report.retried;
            total.served_by.extend(report.served_by);
        }
        total
    }
}

/// Waits up to [`PATIENCE`] until a `Say` on a new channel is answered by one of `pids`.
async fn answered_by_one_of(addr: SocketAddr, pids: &[u32]) -> bool {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while tokio::time::Instant::now() < deadline {
        let mut client = EchoClient::new(channel(addr).await);
        let request = SayRequest {
            message: "who".to_owned(),
        };
        if let Ok(reply) = client.say(request).await
            && pids.contains(&reply.into_inner().worker_pid)
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// A blocking wait (the kit's) from async code.
async fn blocking<T: Send + 'static>(wait: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(wait)
        .await
        .expect("a blocking wait")
}

/// No call of `report` failed through `what` (a roll, an upgrade), and old and new
/// workers both served some.
fn assert_none_failed(report: CallReport, what: &str, before: &[u32], after: &[u32]) {
    eprintln!(
        "unary calls through {what}: {} ok, {} failed, {} made again (never sent)",
        report.ok,
        report.failed.len(),
        report.retried
    );
    assert!(
        report.failed.is_empty(),
        "calls failed through {what}: {} of {}: {:?}",
        report.failed.len(),
        report.ok as usize + report.failed.len(),
        report.failed.iter().take(5).collect::<Vec<_>>()
    );
    assert!(
        report.served_by.iter().any(|pid| before.contains(pid))
            && report.served_by.iter().any(|pid| after.contains(pid)),
        "the callers should have been served by old and new workers: {:?} (old {before:?}, \
         new {after:?})",
        report.served_by
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unary_calls_at_full_speed_through_a_rolling_restart_fail_none() {
    let program = Arc::new(grpc(&[]));
    let addr = program.listening_addr();
    let before = program.wait_for_workers(2);
    let calls = Calls::start(addr, 2, 2).await;
    // Calls are going through before the roll.
    assert!(answered_by_one_of(addr, &before).await);
    tokio::time::sleep(Duration::from_millis(300)).await;

    program.signal(Signal::SIGHUP);
    let watched = program.clone();
    blocking(move || watched.wait_for_log("rolling restart done")).await;
    let watched = program.clone();
    let after = blocking(move || watched.wait_for_workers(2)).await;
    assert!(
        after.iter().all(|pid| !before.contains(pid)),
        "before {before:?}, after {after:?}"
    );
    // Keep calling until the new workers answer, and a little longer.
    assert!(
        answered_by_one_of(addr, &after).await,
        "no new worker answered"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_none_failed(calls.stop().await, "a roll", &before, &after);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unary_calls_at_full_speed_through_a_master_upgrade_fail_none() {
    let program = Arc::new(grpc(&[]));
    let addr = program.listening_addr();
    let old_master = program.pid();
    let before = program.wait_for_workers(2);
    let calls = Calls::start(addr, 2, 2).await;
    assert!(answered_by_one_of(addr, &before).await);
    tokio::time::sleep(Duration::from_millis(300)).await;

    program.signal(Signal::SIGUSR2);
    let watched = program.clone();
    let new_master = blocking(move || watched.new_master_pid()).await;
    assert_ne!(new_master, old_master);
    let old_gone = blocking(move || wait_until(PATIENCE, || !is_alive(old_master))).await;
    assert!(old_gone, "the old master did not exit");
    let after = blocking(move || {
        let mut workers = Vec::new();
        wait_until(PATIENCE, || {
            workers = wix_cluster_suite::workers_of(new_master);
            workers.len() == 2
        });
        workers
    })
    .await;
    assert_eq!(after.len(), 2, "the new master's workers: {after:?}");
    assert!(
        answered_by_one_of(addr, &after).await,
        "no new worker answered"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_none_failed(calls.stop().await, "an upgrade", &before, &after);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streaming_call_still_running_at_the_drain_timeout_ends_unavailable_not_reset() {
    // A short drain timeout: the stream (a reply every 50 ms for 100 s) outlives it.
    let program = Arc::new(grpc(&[("DRAIN_TIMEOUT_MS", "1500")]));
    let addr = program.listening_addr();
    let before = program.wait_for_workers(2);
    let mut client = EchoClient::new(channel(addr).await);
    let request = CountRequest {
        count: 2000,
        interval_ms: 50,
    };
    let mut stream = client
        .count(request)
        .await
        .expect("the streaming call starts")
        .into_inner();
    let first = stream
        .message()
        .await
        .expect("a first reply")
        .expect("the stream has replies");
    assert_eq!(first.n, 1);
    assert!(before.contains(&first.worker_pid));

    program.signal(Signal::SIGHUP);
    let started = tokio::time::Instant::now();
    let mut last = first.n;
    let end = loop {
        match tokio::time::timeout(PATIENCE, stream.message()).await {
            Err(_) => panic!("the stream neither ended nor sent for {PATIENCE:?}"),
            Ok(Ok(Some(reply))) => {
                assert_eq!(reply.n, last + 1, "replies in order, none lost");
                last = reply.n;
            }
            Ok(Ok(None)) => panic!("the stream ended OK after {last} replies: it was cut short"),
            Ok(Err(status)) => break status,
        }
    };
    let took = started.elapsed();
    assert_eq!(
        end.code(),
        Code::Unavailable,
        "the stream should end with UNAVAILABLE, not {end:?}"
    );
    assert!(
        end.message().contains("draining"),
        "UNAVAILABLE sent by the draining worker, not a transport error: {end:?}"
    );
    assert!(
        last > first.n,
        "the stream went on while the worker drained"
    );
    assert!(
        took >= Duration::from_millis(1000),
        "it ended at the drain timeout, not at the drain start: after {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tonic_health_says_not_serving_on_a_draining_worker() {
    let program = Arc::new(grpc(&[("DRAIN_TIMEOUT_MS", "2000")]));
    let addr = program.listening_addr();
    let before = program.wait_for_workers(2);
    let channel = channel(addr).await;
    // The worker this connection is on (HTTP/2: every stream on one worker).
    let served_by = EchoClient::new(channel.clone())
        .say(SayRequest {
            message: "who".to_owned(),
        })
        .await
        .expect("a unary call")
        .into_inner()
        .worker_pid;
    assert!(before.contains(&served_by));
    let mut health = HealthClient::new(channel);
    for service in ["", "echo.Echo"] {
        let check = health
            .check(HealthCheckRequest {
                service: service.to_owned(),
            })
            .await
            .expect("a health check")
            .into_inner();
        assert_eq!(check.status(), ServingStatus::Serving, "{service:?}");
    }
    let mut watch = health
        .watch(HealthCheckRequest {
            service: "echo.Echo".to_owned(),
        })
        .await
        .expect("a health watch")
        .into_inner();
    let first = watch
        .message()
        .await
        .expect("a first status")
        .expect("the watch has statuses");
    assert_eq!(first.status(), ServingStatus::Serving);

    program.signal(Signal::SIGHUP);
    let next = tokio::time::timeout(PATIENCE, watch.message())
        .await
        .expect("a status within PATIENCE")
        .expect("a status, not an error")
        .expect("the watch goes on");
    assert_eq!(
        next.status(),
        ServingStatus::NotServing,
        "worker {served_by} drains"
    );
    assert!(is_alive(served_by), "the draining worker is still there");
}
