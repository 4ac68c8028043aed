//! A tonic gRPC service served by the workers through `wix_cluster::http::serve`, with
//! tonic-health (`grpc.health.v1.Health`) saying SERVING, then NOT_SERVING from the
//! moment the worker begins to drain.
//!
//!     cargo run --example grpc           # then, e.g.:
//!     grpcurl -plaintext -import-path examples/proto -proto echo.proto \
//!         -d '{"message": "hi"}' localhost:50051 echo.Echo/Say
//!
//! The service (`examples/proto/echo.proto`, compiled by the suite's `build.rs` with
//! protox: no `protoc` needed) has a unary call, `Say`, that answers the message with
//! the worker's pid, and a server-streaming one, `Count`, that sends `count` numbered
//! replies one every `interval_ms`. tonic's services are an axum `Router`
//! (`Routes::into_axum_router`), so they are served like any axum app: HTTP/2 (h2c),
//! GOAWAY and the drain included. A streaming call still running at the drain timeout
//! ends with the status UNAVAILABLE ("the worker is draining"), sent by the runtime, not
//! a reset: clients retry it on another worker.
//!
//! `PORT` (default 50051; 0 picks a free one) and `HOST` (default 0.0.0.0) choose the
//! address; `DRAIN_TIMEOUT_MS` (default 5000) is the `Graceful` plugin's drain timeout.

use std::pin::Pin;
use std::time::Duration;

use tokio_stream::Stream;
use tonic::{Request, Response, Status};
use tonic_health::ServingStatus;

mod pb {
    tonic::include_proto!("echo");
}

use pb::echo_server::{Echo, EchoServer};
use pb::{CountReply, CountRequest, SayReply, SayRequest};

fn drain_timeout() -> Duration {
    let millis = std::env::var("DRAIN_TIMEOUT_MS")
        .ok()
        .and_then(|ms| ms.parse().ok())
        .unwrap_or(5000);
    Duration::from_millis(millis)
}

/// The service: answers with the pid of the worker it runs in.
struct Service {
    pid: u32,
}

/// The most replies one `Count` call may ask for, and its slowest pace.
const MAX_COUNT: u32 = 1_000_000;
const MAX_INTERVAL_MS: u32 = 60_000;

#[tonic::async_trait]
impl Echo for Service {
    async fn say(&self, request: Request<SayRequest>) -> Result<Response<SayReply>, Status> {
        Ok(Response::new(SayReply {
            message: request.into_inner().message,
            worker_pid: self.pid,
        }))
    }

    type CountStream = Pin<Box<dyn Stream<Item = Result<CountReply, Status>> + Send>>;

    async fn count(
        &self,
        request: Request<CountRequest>,
    ) -> Result<Response<Self::CountStream>, Status> {
        let CountRequest { count, interval_ms } = request.into_inner();
        if count > MAX_COUNT || interval_ms > MAX_INTERVAL_MS {
            return Err(Status::invalid_argument(format!(
                "count is at most {MAX_COUNT} and interval_ms at most {MAX_INTERVAL_MS}"
            )));
        }
        let pid = self.pid;
        let interval = Duration::from_millis(u64::from(interval_ms));
        // A channel of one: the stream waits for the client rather than queueing.
        let (replies, stream) = tokio::sync::mpsc::channel(1);
        tokio::spawn(async move {
            for n in 1..=count {
                if replies
                    .send(Ok(CountReply { n, worker_pid: pid }))
                    .await
                    .is_err()
                {
                    return; // the client went away
                }
                tokio::time::sleep(interval).await;
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(stream),
        )))
    }
}

#[wix_cluster::main(workers = 2, plugins(Respawn, Graceful(timeout = drain_timeout())))]
async fn main(worker: wix_cluster::Worker) -> std::io::Result<()> {
    let host = std::env::var("HOST").unwrap_or_else(|_| "0.0.0.0".to_owned());
    let port: u16 = match std::env::var("PORT") {
        Ok(port) => port.parse().map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("PORT={port:?} is not a port number"),
            )
        })?,
        Err(_) => 50051,
    };
    let listener = worker.listen((host.as_str(), port)).await?;

    // SERVING for the server as a whole ("") and for the Echo service; NOT_SERVING for
    // both as soon as the worker drains (its HTTP/2 connections are told to go away at
    // the same moment, so a health check that still reaches it sees the truth).
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<EchoServer<Service>>().await;
    let stop = worker.shutdown();
    tokio::spawn(async move {
        stop.await;
        health.set_not_serving::<EchoServer<Service>>().await;
        health
            .set_service_status("", ServingStatus::NotServing)
            .await;
    });

    let echo = EchoServer::new(Service { pid: worker.pid() });
    let app = tonic::service::Routes::new(health_service)
        .add_service(echo)
        .prepare()
        .into_axum_router();
    wix_cluster::http::serve(listener, app, &worker).await
}
