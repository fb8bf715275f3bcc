//! `intake --tls-cert --tls-key`, as separate processes on tansu with a certificate made for
//! the test: gRPC and HTTP both speak TLS only, an order placed over each completes, and a
//! plaintext client gets no answer. A certificate file that cannot be read stops the intake
//! at start with a message naming it.

mod common;

use std::time::Duration;

use common::{https, https_as, localhost_certificate, until, IntakeAndWorker};
use order_fsm::testing::service_address;
use order_fsm::Purchase;
use order_fsm_grpc::{ClientConfig, OrderClient};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn post_order(purchase: &str) -> String {
    format!(
        "POST /orders HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{purchase}",
        purchase.len()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_intake_serves_grpc_and_http_over_tls_only() {
    let Some(brokers) = service_address("ORDER_FSM_KAFKA_BROKERS") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (ca_pem, cert, key) = localhost_certificate(dir.path());
    let processes = IntakeAndWorker::start(
        &brokers,
        "intake-tls",
        &[],
        &["--tls-cert", &cert, "--tls-key", &key],
    );

    // gRPC over TLS, verified against the test's certificate.
    let config = ClientConfig::new(format!("https://{}", processes.grpc))
        .with_tls(ca_pem.clone(), "localhost");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let client = loop {
        match OrderClient::connect(config.clone()).await {
            Ok(client) => break client,
            Err(e) if std::time::Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("the intake's TLS gRPC listener: {e}"),
        }
    };
    let placed = client
        .place_order(&Purchase::example(), None)
        .await
        .expect("placed over TLS");

    // HTTP over TLS.
    let purchase = serde_json::to_string(&Purchase::example()).unwrap();
    let answer = https(&processes.http, &ca_pem, &post_order(&purchase))
        .await
        .expect("an HTTPS answer");
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
    let body = &answer[answer.find("\r\n\r\n").unwrap() + 4..];
    let accepted: serde_json::Value = serde_json::from_str(body).unwrap();
    let over_http: order_fsm::OrderId = accepted["order_id"].as_str().unwrap().parse().unwrap();

    for id in [placed.order_id, over_http] {
        until("the order to complete", Duration::from_secs(60), || {
            let client = client.clone();
            async move {
                client
                    .get_order(id)
                    .await
                    .is_ok_and(|order| order.status == "completed")
            }
        })
        .await;
    }

    // Plaintext gets no HTTP answer from the TLS listener, and no gRPC call goes through.
    let mut plain = TcpStream::connect(&processes.http).await.unwrap();
    plain
        .write_all(post_order(&purchase).as_bytes())
        .await
        .unwrap();
    let mut reply = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(15), plain.read_to_end(&mut reply)).await;
    assert!(
        !reply.starts_with(b"HTTP/"),
        "{}",
        String::from_utf8_lossy(&reply)
    );
    let plaintext = ClientConfig::new(format!("http://{}", processes.grpc))
        .with_timeout(Some(Duration::from_secs(5)));
    let refused = match OrderClient::connect(plaintext).await {
        Ok(client) => client.get_order(placed.order_id).await.is_err(),
        Err(_) => true,
    };
    assert!(refused, "a plaintext gRPC call went through");
}

#[test]
fn an_unreadable_certificate_stops_the_intake_at_start() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_intake"))
        .args([
            "--brokers",
            "127.0.0.1:1",
            "--tls-cert",
            "/nonexistent/cert.pem",
            "--tls-key",
            "/nonexistent/key.pem",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot read /nonexistent/cert.pem"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_client_ca_only_clients_it_signed_may_connect() {
    let Some(brokers) = service_address("ORDER_FSM_KAFKA_BROKERS") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (server_ca, cert, key) = localhost_certificate(dir.path());
    // The clients' CA, and a client certificate it signed.
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let mut client_params = rcgen::CertificateParams::new(vec!["backend".to_owned()]).unwrap();
    client_params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let client_key = rcgen::KeyPair::generate().unwrap();
    let client = client_params.signed_by(&client_key, &ca, &ca_key).unwrap();
    let (client_cert, client_key) = (client.pem(), client_key.serialize_pem());
    let ca_path = dir.path().join("clients-ca.pem");
    std::fs::write(&ca_path, ca.pem()).unwrap();
    let processes = IntakeAndWorker::start(
        &brokers,
        "intake-mtls",
        &[],
        &[
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
            "--tls-client-ca",
            ca_path.to_str().unwrap(),
        ],
    );

    // gRPC: with the client certificate the call goes through; without, it never does.
    let url = format!("https://{}", processes.grpc);
    let with_cert = ClientConfig::new(url.clone())
        .with_tls(server_ca.clone(), "localhost")
        .with_client_certificate(client_cert.clone(), client_key.clone());
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let client = loop {
        match OrderClient::connect(with_cert.clone()).await {
            Ok(client) => break client,
            Err(e) if std::time::Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("the intake's mutual-TLS listener: {e}"),
        }
    };
    client
        .place_order(&Purchase::example(), None)
        .await
        .expect("placed with a client certificate");
    let without = ClientConfig::new(url)
        .with_tls(server_ca.clone(), "localhost")
        .with_timeout(Some(Duration::from_secs(5)));
    let refused = match OrderClient::connect(without).await {
        Ok(client) => client
            .place_order(&Purchase::example(), None)
            .await
            .is_err(),
        Err(_) => true,
    };
    assert!(refused, "a client without a certificate placed an order");

    // HTTP: the same.
    let purchase = serde_json::to_string(&Purchase::example()).unwrap();
    let request = post_order(&purchase);
    let answer = https_as(
        &processes.http,
        &server_ca,
        &request,
        Some((&client_cert, &client_key)),
    )
    .await
    .expect("an answer to a client with a certificate");
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
    let anonymous = https(&processes.http, &server_ca, &request).await;
    assert!(
        anonymous.as_ref().map_or(true, |a| !a.starts_with("HTTP/")),
        "{anonymous:?}"
    );
}
