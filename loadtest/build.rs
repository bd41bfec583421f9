//! Compiles the project's own `.proto` files (../proto) into prost messages for the gRPC load
//! generator, with the `protoc` binary of `protoc-bin-vendored` (as the root build.rs does). The
//! generator frames gRPC requests itself over hyper's HTTP/2 client; the server side is for the
//! floor's tonic stack.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts are single-threaded; prost-build reads PROTOC.
    unsafe { std::env::set_var("PROTOC", protoc) };
    let include = protoc_bin_vendored::include_path()?;
    let include = include
        .to_str()
        .ok_or("protoc include path is not UTF-8")?
        .to_string();
    let protos = [
        "../proto/tensorflow_serving/apis/predict.proto",
        "../proto/inference/grpc_service.proto",
    ];
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(true)
        .compile_protos(&protos, &["../proto", include.as_str()])?;
    println!("cargo:rerun-if-changed=../proto");
    Ok(())
}
