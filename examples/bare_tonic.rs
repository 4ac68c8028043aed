//! The gRPC benchmark's baseline: the `grpc` example's `Echo/Say` without wix-cluster.
//! One process, a tokio runtime with 2 worker threads, tonic's own server
//! (`tonic::transport::Server`, hyper underneath), the same service and answer.
//!
//!     cargo run --release --example bare_tonic
//!
//! `PORT` (default 50051; 0 picks a free one) and `HOST` (default 0.0.0.0) choose the
//! address; it prints `listening on <addr>` once bound. `Count` is not served here.

use tonic::{Request, Response, Status};

mod pb {
    tonic::include_proto!("echo");
}

use pb::echo_server::{Echo, EchoServer};
use pb::{CountReply, CountRequest, SayReply, SayRequest};

struct Service {
    pid: u32,
}

#[tonic::async_trait]
impl Echo for Service {
    async fn say(&self, request: Request<SayRequest>) -> Result<Response<SayReply>, Status> {
        Ok(Response::new(SayReply {
            message: request.into_inner().message,
            worker_pid: self.pid,
        }))
    }

    type CountStream = tokio_stream::Empty<Result<CountReply, Status>>;

    async fn count(
        &self,
        _request: Request<CountRequest>,
    ) -> Result<Response<Self::CountStream>, Status> {
        Err(Status::unimplemented("the baseline serves Say only"))
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(serve())
}

async fn serve() -> Result<(), Box<dyn std::error::Error>> {
    let host = std::env::var("HOST").unwrap_or_else(|_| "0.0.0.0".to_owned());
    let port = std::env::var("PORT").unwrap_or_else(|_| "50051".to_owned());
    let listener = tokio::net::TcpListener::bind(format!("{host}:{port}")).await?;
    println!("listening on {}", listener.local_addr()?);
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    tonic::transport::Server::builder()
        .add_service(EchoServer::new(Service {
            pid: std::process::id(),
        }))
        .serve_with_incoming(incoming)
        .await?;
    Ok(())
}
