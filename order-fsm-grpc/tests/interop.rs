//! An independent client, generated from the `.proto` by PyPI's grpcio-tools, places an
//! order and reads it back (`scripts/grpc_interop.py`).
//!
//! Without `grpc_tools` installed the test is skipped with a note on stderr, except under
//! `CI=true`, where it fails (CI installs `grpcio-tools` with pip).

mod common;

use std::path::PathBuf;
use std::process::Stdio;

use common::{Harness, Options};

fn python_has_grpc_tools() -> bool {
    std::process::Command::new("python3")
        .args(["-c", "import grpc_tools"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_places_and_reads_an_order() {
    if !python_has_grpc_tools() {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("python3 with grpcio-tools is required in CI: pip install grpcio-tools");
        }
        eprintln!(
            "SKIPPED python_client_places_and_reads_an_order: `python3 -c \"import grpc_tools\"` \
             failed; install it with `pip install grpcio-tools` (required when CI=true)"
        );
        return;
    }
    let h = Harness::start(Options::default()).await;
    let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let script = crate_dir.join("../scripts/grpc_interop.py");
    let output = tokio::process::Command::new("python3")
        .arg(&script)
        .arg("--addr")
        .arg(h.addr.to_string())
        .arg("--proto-dir")
        .arg(crate_dir.join("../order-fsm-proto/proto"))
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(std::time::Duration::from_secs(120), output)
        .await
        .expect("the interop script finishes within 2 minutes")
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("interop ok"),
        "interop script failed ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
    h.drained().await;
    assert_eq!(
        h.store.len(),
        3,
        "the python client created exactly three orders (one placed twice, two in one PlaceOrders call)"
    );
    h.stop().await;
}
