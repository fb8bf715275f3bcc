//! The `intake` program's edges, as a separate process on tansu: it serves gRPC server
//! reflection unless started with `--no-reflection`, and its HTTP listener closes a client
//! that does not finish its request head within `--head-timeout-secs`.

mod common;

use std::time::{Duration, Instant};

use common::{free_port, kafka_args, spawn, unique_prefix, Process};
use order_fsm::testing::service_address;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
use tonic_reflection::pb::v1::ServerReflectionRequest;

/// An intake process with `extra` flags; its gRPC and HTTP addresses.
fn intake(brokers: &str, extra: &[&str]) -> (Process, String, String) {
    let prefix = unique_prefix("intake-edges");
    let grpc = format!("127.0.0.1:{}", free_port());
    let http = format!("127.0.0.1:{}", free_port());
    let mut args = vec!["--grpc-addr", &grpc, "--http-addr", &http];
    args.extend_from_slice(extra);
    let process = spawn(
        env!("CARGO_BIN_EXE_intake"),
        &kafka_args(brokers, &prefix, &args),
    );
    (process, grpc, http)
}

/// A channel to `addr`, once the process listens.
async fn channel(addr: &str) -> tonic::transport::Channel {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}")).unwrap();
        match endpoint.connect().await {
            Ok(channel) => return channel,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("the intake never listened on {addr}: {e}"),
        }
    }
}

/// The services reflection lists, or the status it failed with.
async fn listed_services(addr: &str) -> Result<Vec<String>, tonic::Status> {
    let mut reflection = ServerReflectionClient::new(channel(addr).await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = reflection
        .server_reflection_info(tokio_stream::iter([request]))
        .await?
        .into_inner();
    let first = responses.message().await?.expect("one answer");
    let Some(MessageResponse::ListServicesResponse(list)) = first.message_response else {
        panic!("unexpected {first:?}");
    };
    Ok(list.service.into_iter().map(|s| s.name).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_intake_serves_reflection_unless_told_not_to() {
    let Some(brokers) = service_address("ORDER_FSM_KAFKA_BROKERS") else {
        return;
    };
    let (_on, grpc, _) = intake(&brokers, &[]);
    let services = listed_services(&grpc).await.expect("reflection is served");
    assert!(
        services
            .iter()
            .any(|s| s == order_fsm_grpc::proto::SERVICE_NAME),
        "{services:?}"
    );
    let (_off, grpc, _) = intake(&brokers, &["--no-reflection"]);
    let refused = listed_services(&grpc).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unimplemented, "{refused:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_intake_closes_a_client_that_dribbles_its_request_head() {
    let Some(brokers) = service_address("ORDER_FSM_KAFKA_BROKERS") else {
        return;
    };
    let (_intake, grpc, http) = intake(&brokers, &["--head-timeout-secs", "1"]);
    channel(&grpc).await; // listening
    let mut slow = loop {
        match tokio::net::TcpStream::connect(&http).await {
            Ok(stream) => break stream,
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    slow.write_all(b"POST /orders HTTP/1.1\r\nHost: a\r\n")
        .await
        .unwrap();
    let start = Instant::now();
    let mut buf = [0u8; 256];
    let closed = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            match slow.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "still open after 15 s");
    assert!(
        start.elapsed() >= Duration::from_millis(800),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_intake_limits_each_client_over_both_apis() {
    let Some(brokers) = service_address("ORDER_FSM_KAFKA_BROKERS") else {
        return;
    };
    let (_intake, grpc, http) = intake(&brokers, &["--rate-limit", "5"]);
    let channel = channel(&grpc).await;
    let mut client =
        order_fsm_grpc::proto::order_service_client::OrderServiceClient::new(channel.clone());
    let id = order_fsm::OrderId::random().to_string();
    let mut codes = Vec::new();
    for _ in 0..12 {
        let answer = client
            .get_order(order_fsm_grpc::proto::GetOrderRequest {
                order_id: id.clone(),
            })
            .await;
        codes.push(answer.map_or_else(
            |s| (s.code(), s.metadata().get("retry-after-ms").is_some()),
            |_| (tonic::Code::Ok, false),
        ));
    }
    let limited = codes
        .iter()
        .filter(|(code, _)| *code == tonic::Code::ResourceExhausted)
        .count();
    assert!(
        (6..=7).contains(&limited),
        "a burst of 5 (+1 refilled) then refusals: {codes:?}"
    );
    assert!(
        codes[..5]
            .iter()
            .all(|(code, _)| *code == tonic::Code::NotFound),
        "{codes:?}"
    );
    assert!(codes
        .iter()
        .filter(|(code, _)| *code == tonic::Code::ResourceExhausted)
        .all(|(_, hint)| *hint));
    // Health checks are not order calls: never limited.
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    for _ in 0..10 {
        health
            .check(tonic_health::pb::HealthCheckRequest::default())
            .await
            .expect("health is not limited");
    }

    // HTTP counts the same client apart, per API: its own burst of 5, then 429.
    let http_client = reqwest::Client::new();
    let mut statuses = Vec::new();
    for _ in 0..12 {
        let answer = http_client
            .get(format!("http://{http}/orders/{id}"))
            .send()
            .await
            .unwrap();
        let retry_after = answer.headers().get("retry-after").is_some();
        statuses.push((answer.status().as_u16(), retry_after));
    }
    assert!(statuses[..5].iter().all(|(s, _)| *s == 404), "{statuses:?}");
    let refused: Vec<_> = statuses.iter().filter(|(s, _)| *s == 429).collect();
    assert!((6..=7).contains(&refused.len()), "{statuses:?}");
    assert!(refused.iter().all(|(_, retry_after)| *retry_after));
    // The budget refills: after a second the client may call again.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let again = http_client
        .get(format!("http://{http}/orders/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 404);
}
