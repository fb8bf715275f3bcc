//! The deployment files for users with Docker and Kubernetes. No Docker engine runs here, so
//! this checks that they parse and reference what exists: programs, their flags and
//! environment variables, index names and saved-object references.

use std::collections::HashSet;
use std::path::Path;
use std::process::Command;

use serde::Deserialize;
use serde_yaml::Value;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn help_of(program: &str) -> String {
    let binary = match program {
        "intake" => env!("CARGO_BIN_EXE_intake"),
        "worker" => env!("CARGO_BIN_EXE_worker"),
        other => panic!("deployment runs unknown program `{other}`"),
    };
    let out = Command::new(binary).arg("--help").output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

/// Every `--flag` of a container command and every env var must be known to the program.
fn check_command(command: &[Value], env: &[String]) {
    let words: Vec<&str> = command.iter().map(|v| v.as_str().unwrap()).collect();
    let help = help_of(words[0]);
    for flag in words.iter().filter(|w| w.starts_with("--")) {
        assert!(
            help.contains(&format!("{flag} ")),
            "{} has no flag {flag}",
            words[0]
        );
    }
    for var in env {
        assert!(
            help.contains(&format!("env: {var}")),
            "{} reads no {var}",
            words[0]
        );
    }
}

#[test]
fn the_compose_file_runs_kraft_kafka_elasticsearch_kibana_smtp_and_our_programs() {
    let compose: Value = serde_yaml::from_str(&read("deploy/compose.yaml")).unwrap();
    let services = compose["services"].as_mapping().unwrap();
    let names: HashSet<&str> = services.keys().map(|k| k.as_str().unwrap()).collect();
    for wanted in [
        "kafka",
        "elasticsearch",
        "kibana",
        "smtp",
        "intake",
        "worker",
    ] {
        assert!(names.contains(wanted), "no {wanted} service");
    }
    let kafka = &compose["services"]["kafka"]["environment"];
    assert_eq!(
        kafka["KAFKA_PROCESS_ROLES"].as_str(),
        Some("broker,controller"),
        "KRaft, no ZooKeeper"
    );
    assert!(!names.iter().any(|n| n.contains("zookeeper")));
    for program in ["intake", "worker"] {
        let service = &compose["services"][program];
        assert_eq!(
            service["build"]["dockerfile"].as_str(),
            Some("deploy/Dockerfile")
        );
        check_command(service["command"].as_sequence().unwrap(), &[]);
    }
}

#[test]
fn the_dockerfile_copies_programs_that_exist() {
    let dockerfile = read("deploy/Dockerfile");
    let copied: Vec<&str> = dockerfile
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("/src/target/release/"))
        .collect();
    assert!(copied.len() >= 2, "{copied:?}");
    for program in copied {
        assert!(
            root()
                .join(format!("examples/src/bin/{program}.rs"))
                .exists(),
            "no program {program}"
        );
    }
}

#[test]
fn the_kubernetes_manifests_parse_and_the_workers_scale_with_partitions() {
    for file in ["deploy/k8s/worker.yaml", "deploy/k8s/intake.yaml"] {
        let text = read(file);
        let docs: Vec<Value> = serde_yaml::Deserializer::from_str(&text)
            .map(|d| Value::deserialize(d).unwrap())
            .collect();
        assert!(!docs.is_empty());
        for doc in &docs {
            assert!(
                doc["apiVersion"].is_string() && doc["kind"].is_string(),
                "{file}"
            );
            if doc["kind"] == "Deployment" {
                let container = &doc["spec"]["template"]["spec"]["containers"][0];
                let env: Vec<String> = container["env"]
                    .as_sequence()
                    .unwrap()
                    .iter()
                    .map(|e| e["name"].as_str().unwrap().to_owned())
                    .collect();
                let command = container["command"].as_sequence().unwrap();
                check_command(command, &env);
                let selector = &doc["spec"]["selector"]["matchLabels"];
                assert_eq!(
                    selector, &doc["spec"]["template"]["metadata"]["labels"],
                    "{file}: selector"
                );
            }
            if doc["kind"] == "HorizontalPodAutoscaler" {
                let max = doc["spec"]["maxReplicas"].as_u64().unwrap();
                let partitions = text
                    .split("\"--partitions\", \"")
                    .nth(1)
                    .unwrap()
                    .split('"')
                    .next()
                    .unwrap();
                assert!(
                    max <= partitions.parse().unwrap(),
                    "more workers than partitions would idle"
                );
            }
        }
    }
}

#[test]
fn the_kibana_objects_reference_each_other_and_our_indices() {
    let objects: Vec<serde_json::Value> = read("deploy/kibana/dashboard.ndjson")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ids: HashSet<&str> = objects.iter().map(|o| o["id"].as_str().unwrap()).collect();
    for object in &objects {
        for reference in object["references"].as_array().into_iter().flatten() {
            assert!(
                ids.contains(reference["id"].as_str().unwrap()),
                "dangling {reference}"
            );
        }
    }
    let config = order_fsm_elastic::ElasticBuilder::new("http://localhost:9200")
        .with_index_prefix("order-fsm-");
    let config = config.config();
    let titles: HashSet<&str> = objects
        .iter()
        .filter(|o| o["type"] == "index-pattern")
        .map(|o| o["attributes"]["title"].as_str().unwrap())
        .collect();
    for index in [
        config.transitions_index(),
        config.orders_index(),
        config.metrics_index(),
    ] {
        assert!(titles.contains(index.as_str()), "no data view for {index}");
    }
    assert!(objects.iter().any(|o| o["type"] == "dashboard"));
}
