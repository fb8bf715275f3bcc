//! The one-command run, exercised as a newcomer runs it.

use std::process::Command;

#[test]
fn the_pipeline_finishes_every_order_and_writes_its_reports() {
    let out = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_pipeline"))
        .args(["--orders", "300", "--language", "es", "--out"])
        .arg(out.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.split_whitespace().eq(["lost", "0"])),
        "{stdout}"
    );

    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["orders_placed"], 300);
    assert_eq!(summary["completed"], 300);
    assert_eq!(summary["lost"], 0);
    assert_eq!(summary["metrics"]["transitions"], 1_200);
    assert!(
        summary["peak_rss_bytes"]
            .as_u64()
            .is_some_and(|b| b > 1 << 20),
        "{summary}"
    );

    let mails = std::fs::read_dir(out.path().join("outbox"))
        .unwrap()
        .count();
    assert_eq!(
        mails, 1_505,
        "one mail per placement and per transition (and 5 for the warm-up order)"
    );
    for chart in ["throughput.svg", "latency.svg"] {
        let svg = std::fs::read_to_string(out.path().join(chart)).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("</svg>"), "{chart}");
    }
}

#[test]
fn bulk_intake_at_a_steady_rate_finishes_every_order() {
    let out = tempfile::tempdir().unwrap();
    let run = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_pipeline"))
            .args(["--orders", "2000", "--no-mail", "--out"])
            .arg(out.path())
            .args(extra)
            .output()
            .unwrap()
    };
    let output = run(&["--batch", "100", "--rate", "4000"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("(100 per request)"), "{stdout}");
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["orders_placed"], 2_000);
    assert_eq!(summary["completed"], 2_000);
    assert_eq!(summary["lost"], 0);
    // 2,000 orders at 4,000/s take at least half a second to place.
    assert!(
        summary["elapsed_secs"].as_f64().unwrap() >= 0.45,
        "{summary}"
    );
    assert!(
        !out.path().join("outbox").exists(),
        "no mail with --no-mail"
    );

    // The same through the HTTP gateway's POST /orders/batch.
    let output = run(&["--batch", "100", "--intake", "http"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["completed"], 2_000);
    assert_eq!(summary["lost"], 0);
}

/// The number before "requests throttled" on the intake line of the summary.
fn throttled(stdout: &str) -> u64 {
    let line = stdout
        .lines()
        .find(|l| l.starts_with("intake"))
        .unwrap_or_else(|| panic!("no intake line in {stdout}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    let at = words
        .iter()
        .position(|w| *w == "requests")
        .expect("throttled count");
    words[at - 1].parse().unwrap()
}

#[test]
fn a_burst_beyond_the_backlog_limit_is_throttled_and_every_order_completes() {
    let out = tempfile::tempdir().unwrap();
    for intake in ["grpc", "http"] {
        let output = Command::new(env!("CARGO_BIN_EXE_pipeline"))
            .args(["--orders", "20000", "--batch", "100", "--no-mail"])
            .args(["--backlog-limit", "2000", "--intake", intake, "--out"])
            .arg(out.path())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        // Refused with RESOURCE_EXHAUSTED / 429 and sent again, not failed: none refused for good.
        assert!(
            throttled(&stdout) > 0,
            "{intake}: nothing throttled\n{stdout}"
        );
        assert!(stdout.contains(" 0 refused"), "{stdout}");
        let summary: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.path().join("summary.json")).unwrap())
                .unwrap();
        assert_eq!(summary["completed"], 20_000, "{intake}");
        assert_eq!(summary["lost"], 0, "{intake}");
    }
}
