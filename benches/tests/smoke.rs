//! Runs the whole suite at tiny sizes as a subprocess of the binary and checks the report:
//! it parses, every comparison that ran holds anchor, subject and ratio for each round, none
//! failed, the skipped ones say why, and the README rewrite touches only the marked part.
//! No timing is asserted.

use std::process::Command;

use serde_json::Value;

const BEGIN: &str = "<!-- benches:begin -->";
const END: &str = "<!-- benches:end -->";

#[test]
fn tiny_suite_reports_a_ratio_for_every_comparison_that_ran() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("benches-smoke");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let readme = dir.join("README.md");
    std::fs::write(
        &readme,
        format!("# t\n\n## Performance\n\nbefore\n\n{BEGIN}\nold table\n{END}\n\nafter\n"),
    )
    .unwrap();

    let output = Command::new(env!("CARGO_BIN_EXE_order-fsm-benches"))
        .args(["--tiny", "--write-readme", "--out"])
        .arg(&dir)
        .arg("--readme")
        .arg(&readme)
        .output()
        .expect("run the benches binary");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{}\n{stderr}",
        String::from_utf8_lossy(&output.stdout)
    );

    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap())
            .expect("report.json parses");
    assert_eq!(report["suite"], "tiny");
    for key in [
        "cores",
        "load_average",
        "allocator",
        "profile",
        "git_revision",
    ] {
        assert!(!report["machine"][key].is_null(), "machine.{key} missing");
    }
    let comparisons = report["comparisons"].as_array().unwrap();
    assert!(!comparisons.is_empty());
    let mut ids = Vec::new();
    for c in comparisons {
        let id = c["id"].as_str().unwrap();
        ids.push(id.to_owned());
        let rounds = c["ratio"]["rounds"].as_array().unwrap().len();
        assert!(rounds >= 2, "{id}: {rounds} rounds");
        for side in ["anchor", "subject"] {
            let stats = &c[side]["stats"];
            assert_eq!(
                stats["rounds"].as_array().unwrap().len(),
                rounds,
                "{id} {side}"
            );
            assert!(stats["median"].as_f64().unwrap() > 0.0, "{id} {side}");
        }
        let ratio = c["ratio"]["median"].as_f64().unwrap();
        assert!(ratio.is_finite() && ratio > 0.0, "{id}: ratio {ratio}");
    }
    // The embedded defaults always run.
    for id in [
        "engine.apply",
        "engine.runner",
        "kafka.source.lifecycle.mock",
        "kafka.sink.mock",
        "grpc.place_order",
    ] {
        assert!(ids.iter().any(|i| i == id), "{id} did not run: {ids:?}");
    }
    assert_eq!(report["failed"], Value::Array(Vec::new()), "{stderr}");
    for s in report["skipped"].as_array().unwrap() {
        let reason = s["reason"].as_str().unwrap();
        assert!(!reason.is_empty());
        println!("skipped {}: {reason}", s["id"].as_str().unwrap());
    }
    println!("ran: {}", ids.join(", "));

    let markdown = std::fs::read_to_string(dir.join("report.md")).unwrap();
    for id in &ids {
        let c = comparisons.iter().find(|c| c["id"] == id.as_str()).unwrap();
        assert!(
            markdown.contains(c["title"].as_str().unwrap()),
            "{id} not in report.md"
        );
    }
    let rewritten = std::fs::read_to_string(&readme).unwrap();
    assert!(rewritten.starts_with("# t\n\n## Performance\n\nbefore\n\n"));
    assert!(rewritten.ends_with(&format!("{END}\n\nafter\n")));
    assert!(!rewritten.contains("old table"));
    assert!(rewritten.contains("| comparison |"));
}
