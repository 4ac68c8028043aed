//! Compiles `examples/proto/*.proto` for the gRPC example and its tests
//! (`tonic::include_proto!("echo")`): protox parses them (pure Rust, no `protoc`), and
//! tonic-prost-build writes the messages, the server and the client.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["examples/proto/echo.proto"];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    let files = protox::compile(protos, ["examples/proto"])?;
    tonic_prost_build::configure().compile_fds(files)?;
    Ok(())
}
