//! Compiles the `.proto` files with protox (pure Rust, no system `protoc`) into prost
//! messages plus the encoded descriptor set (with source info, for server reflection), and
//! tells dependents' build scripts where the files are (`DEP_ORDER_FSM_PROTO_INCLUDE`).

use std::path::PathBuf;

const FILES: [&str; 2] = [
    "proto/order_fsm/v1/order_service.proto",
    "proto/order_fsm/v1/records.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let mut compiler = protox::Compiler::new(["proto"])?;
    compiler.include_source_info(true).open_files(FILES)?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("order_fsm_v1_descriptor.bin"),
        compiler.encode_file_descriptor_set(),
    )?;
    prost_build::Config::new().compile_fds(compiler.file_descriptor_set())?;
    let include = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("proto");
    println!("cargo:include={}", include.display());
    Ok(())
}
