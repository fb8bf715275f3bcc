//! An independent client, PyPI `confluent-kafka` (scripts/kafka_interop.py), produces
//! commands and consumes transitions, with a runner in between, in JSON and in protobuf.

mod common;

use std::path::PathBuf;
use std::process::Command as Process;
use std::sync::Arc;

use common::{Broker, Running};
use order_fsm::{Dwell, Lifecycle, Runner};
use order_fsm_kafka::{KafkaTransitionSink, WireFormat};

/// Whether `confluent_kafka` and `grpc_tools` import; in CI their absence fails the test.
fn python_client_available() -> bool {
    let ok = Process::new("python3")
        .args(["-c", "import confluent_kafka, grpc_tools"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("CI=true but `python3 -c 'import confluent_kafka, grpc_tools'` fails: pip install confluent-kafka grpcio-tools");
        }
        eprintln!("SKIPPED: python3 cannot import confluent_kafka and grpc_tools (pip install confluent-kafka grpcio-tools)");
    }
    ok
}

async fn python_client(broker: Broker) {
    interop(&broker, WireFormat::Json, false).await;
}

/// The same in protobuf: Python produces `CommandRecord`s and reads `TransitionRecord`s with
/// classes generated from order-fsm-proto's `.proto` files.
async fn python_client_protobuf(broker: Broker) {
    interop(&broker, WireFormat::Protobuf, false).await;
}

/// Packed transition records (ADR 8), in both formats: Python reads the packs by their
/// header.
async fn python_client_packed(broker: Broker) {
    interop(&broker, WireFormat::Json, true).await;
    interop(&broker, WireFormat::Protobuf, true).await;
}

async fn interop(broker: &Broker, format: WireFormat, packed: bool) {
    if !python_client_available() {
        return;
    }
    let config = broker
        .config("interop", 3)
        .await
        .with_wire_format(format)
        .with_packed_transitions(packed);
    let runner = Runner::builder(Lifecycle::ecommerce())
        .with_sink(Arc::new(KafkaTransitionSink::new(&config).expect("sink")))
        .with_auto_advance(Dwell::None)
        .build()
        .expect("runner");
    let running = Running::start(Arc::new(runner), &config);

    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/kafka_interop.py");
    let output = tokio::task::spawn_blocking({
        let config = config.clone();
        move || {
            Process::new("python3")
                .arg(script)
                .args(["--brokers", config.brokers()])
                .args(["--commands-topic", config.commands_topic()])
                .args(["--transitions-topic", config.transitions_topic()])
                .args(["--orders", "20", "--timeout", "60"])
                .args(["--format", format.header_value()])
                .arg("--proto-dir")
                .arg(proto_dir())
                .output()
                .expect("run the python client")
        }
    })
    .await
    .expect("python task");
    let report = running.stop().await;

    let stdout = String::from_utf8_lossy(&output.stdout);
    eprintln!(
        "python client: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "the python client saw every order complete"
    );
    let summary: serde_json::Value = serde_json::from_str(stdout.trim()).expect("JSON summary");
    assert_eq!(summary["completed"], 20);
    assert_eq!(
        summary["steps"].as_array().map(Vec::len),
        Some(5),
        "place + 4 steps"
    );
    assert_eq!(
        report.metrics.orders_placed, 20,
        "the runner decoded Python's commands"
    );
    let named = if packed {
        format!("{}-pack", format.header_value())
    } else {
        format.header_value().to_owned()
    };
    assert_eq!(
        summary["transition_formats"],
        serde_json::json!([named]),
        "every message named its format"
    );
}

fn proto_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../order-fsm-proto/proto")
}

against_both!(python_client, python_client_protobuf, python_client_packed);
