//! Compiles the project's own `.proto` files (proto/) for the gRPC adapters and TensorBoard's event files with the `protoc`
//! binary of `protoc-bin-vendored`, so no system protoc is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts are single-threaded; prost-build reads PROTOC.
    unsafe { std::env::set_var("PROTOC", protoc) };
    let include = protoc_bin_vendored::include_path()?;
    let include = include
        .to_str()
        .ok_or("protoc include path is not UTF-8")?
        .to_string();
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    let protos = [
        "proto/tensorflow_serving/apis/prediction_service.proto",
        "proto/tensorflow_serving/apis/model_service.proto",
        "proto/inference/grpc_service.proto",
        // Event files for TensorBoard (src/observability/tfevents.rs).
        "proto/tensorflow/core/util/event.proto",
        "proto/tensorboard/plugins/hparams/hparams.proto",
    ];
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // A KServe request's bytes (raw inputs, string values) as slices of the received buffer,
        // not a Vec each: prost's decode was the largest part of gRPC's own cost in a profile.
        .bytes(".inference.ModelInferRequest")
        .bytes(".inference.InferTensorContents")
        .file_descriptor_set_path(out.join("mlengine_descriptor.bin"))
        .compile_protos(&protos, &["proto", include.as_str()])?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
