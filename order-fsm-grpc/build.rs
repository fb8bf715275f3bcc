//! Generates the tonic server and client of `order_fsm.v1.OrderService` from the schema in
//! `order-fsm-proto` (found through its `links` metadata, `DEP_ORDER_FSM_PROTO_INCLUDE`); the
//! messages themselves are that crate's (`extern_path`), so gRPC and Kafka share one schema.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let include = std::env::var("DEP_ORDER_FSM_PROTO_INCLUDE")?;
    println!("cargo:rerun-if-changed={include}");
    let mut compiler = protox::Compiler::new([&include])?;
    compiler.open_file("order_fsm/v1/order_service.proto")?;
    tonic_prost_build::configure()
        .extern_path(".order_fsm.v1", "::order_fsm_proto::v1")
        .compile_fds(compiler.file_descriptor_set())?;
    Ok(())
}
