//! The deployment files for users with Docker and Kubernetes. No Docker engine runs here, so
//! this checks that they parse and reference what exists: programs, their flags and
//! environment variables, index names and saved-object references.

mod common;

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

/// `promtool`, or `None` with the reason printed.
fn promtool() -> Option<&'static str> {
    common::tool_available("promtool", "apt-get install prometheus").then_some("promtool")
}

/// The port of every `--metrics-addr` in the compose file's program commands.
fn compose_metrics_ports(compose: &Value) -> HashSet<String> {
    ["intake", "worker"]
        .iter()
        .map(|program| {
            let words: Vec<&str> = compose["services"][program]["command"]
                .as_sequence()
                .unwrap()
                .iter()
                .map(|w| w.as_str().unwrap())
                .collect();
            let at = words
                .iter()
                .position(|w| *w == "--metrics-addr")
                .unwrap_or_else(|| panic!("{program} serves no metrics"));
            words[at + 1].rsplit(':').next().unwrap().to_owned()
        })
        .collect()
}

#[test]
fn prometheus_scrapes_the_metrics_port_of_every_program() {
    let compose: Value = serde_yaml::from_str(&read("deploy/compose.yaml")).unwrap();
    let config: Value = serde_yaml::from_str(&read("deploy/prometheus.yml")).unwrap();
    let ports = compose_metrics_ports(&compose);
    let mut scraped = HashSet::new();
    for job in config["scrape_configs"].as_sequence().unwrap() {
        for target in job["static_configs"].as_sequence().into_iter().flatten() {
            for t in target["targets"].as_sequence().unwrap() {
                let (host, port) = t.as_str().unwrap().split_once(':').unwrap();
                assert!(
                    ports.contains(port),
                    "{host} scraped on {port}, not {ports:?}"
                );
                scraped.insert(host.to_owned());
            }
        }
        for sd in job["dns_sd_configs"].as_sequence().into_iter().flatten() {
            let port = sd["port"].as_u64().unwrap().to_string();
            assert!(ports.contains(&port), "scraped on {port}, not {ports:?}");
            for name in sd["names"].as_sequence().unwrap() {
                scraped.insert(name.as_str().unwrap().to_owned());
            }
        }
    }
    for program in ["intake", "worker"] {
        assert!(scraped.contains(program), "{program} is not scraped");
    }
    let volumes = format!("{:?}", compose["services"]["prometheus"]["volumes"]);
    assert!(volumes.contains("./prometheus.yml:"), "{volumes}");
    if let Some(promtool) = promtool() {
        let out = Command::new(promtool)
            .args(["check", "config"])
            .arg(root().join("deploy/prometheus.yml"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    }
}

#[test]
fn the_grafana_dashboard_queries_only_metrics_the_programs_expose() {
    let dashboard: serde_json::Value =
        serde_json::from_str(&read("deploy/grafana/dashboards/order-fsm.json")).unwrap();
    let exprs: Vec<&str> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap())
        .map(|t| t["expr"].as_str().unwrap())
        .collect();
    assert!(exprs.len() >= 10, "{exprs:?}");
    let known: HashSet<String> = order_fsm::telemetry::ALL
        .iter()
        .flat_map(|name| ["", "_bucket", "_sum", "_count"].map(|suffix| format!("{name}{suffix}")))
        .collect();
    let mut used = HashSet::new();
    for expr in &exprs {
        for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if word.starts_with("order_fsm_") {
                assert!(known.contains(word), "`{word}` in `{expr}` is not exposed");
                used.insert(word.trim_end_matches("_bucket").to_owned());
            }
        }
    }
    for name in order_fsm::telemetry::ALL {
        assert!(used.contains(*name), "no panel shows {name}");
    }
    // Grafana loads it: the provisioning files point at the mounted folders.
    let compose: Value = serde_yaml::from_str(&read("deploy/compose.yaml")).unwrap();
    let volumes = format!("{:?}", compose["services"]["grafana"]["volumes"]);
    let provider: Value = serde_yaml::from_str(&read(
        "deploy/grafana/provisioning/dashboards/order-fsm.yaml",
    ))
    .unwrap();
    let folder = provider["providers"][0]["options"]["path"]
        .as_str()
        .unwrap();
    assert!(
        volumes.contains(&format!("./grafana/dashboards:{folder}")),
        "{volumes}"
    );
    assert!(volumes.contains("./grafana/provisioning:/etc/grafana/provisioning"));
    // Every query is valid PromQL: promtool parses them as recording rules.
    if let Some(promtool) = promtool() {
        let rules = serde_json::json!({"groups": [{
            "name": "dashboard",
            "rules": exprs.iter().enumerate()
                .map(|(i, e)| serde_json::json!({"record": format!("dashboard:query{i}"), "expr": e}))
                .collect::<Vec<_>>(),
        }]});
        let file = std::env::temp_dir().join(format!("order-fsm-rules-{}.yml", std::process::id()));
        std::fs::write(&file, rules.to_string()).unwrap(); // JSON is YAML
        let out = Command::new(promtool)
            .args(["check", "rules"])
            .arg(&file)
            .output()
            .unwrap();
        let _ = std::fs::remove_file(&file);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}
