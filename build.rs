//! Compiles `examples/proto/*.proto` for the gRPC example and its tests
//! (`tonic::include_proto!("echo")`): protox parses them (pure Rust, no `protoc`), and
//! tonic-prost-build writes the messages, the server and the client. And links the
//! examples with their relative relocations packed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["examples/proto/echo.proto"];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    let files = protox::compile(protos, ["examples/proto"])?;
    tonic_prost_build::configure().compile_fds(files)?;
    // Relative relocations packed (DT_RELR, glibc 2.36+): every process of an example
    // maps far fewer pages of relocations at startup (docs/operating.md, *Release builds*).
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux")
        && std::env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("gnu")
    {
        println!("cargo:rustc-link-arg-examples=-Wl,-z,pack-relative-relocs");
    }
    Ok(())
}
