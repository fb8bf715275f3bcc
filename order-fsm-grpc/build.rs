//! Compiles the service's `.proto` with protox (pure Rust, no system `protoc`) and generates
//! the tonic/prost code plus the encoded descriptor set that server reflection serves.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/order_fsm/v1/order_service.proto";
    println!("cargo:rerun-if-changed=proto");
    let mut compiler = protox::Compiler::new(["proto"])?;
    compiler.include_source_info(true).open_file(proto)?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    // The encoded set is what server reflection serves (`include_file_descriptor_set!`).
    std::fs::write(
        out_dir.join("order_fsm_v1_descriptor.bin"),
        compiler.encode_file_descriptor_set(),
    )?;
    tonic_prost_build::configure().compile_fds(compiler.file_descriptor_set())?;
    Ok(())
}
