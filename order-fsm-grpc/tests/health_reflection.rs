//! The standard health service answers SERVING; reflection lists the order service.

mod common;

use common::{Harness, Options};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
use tonic_reflection::pb::v1::ServerReflectionRequest;

async fn channel(h: &Harness) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(h.url())
        .unwrap()
        .connect()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_answers_serving() {
    let h = Harness::start(Options::default()).await;
    let mut health = HealthClient::new(channel(&h).await);
    for service in ["", order_fsm_grpc::proto::SERVICE_NAME] {
        let reply = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(reply.status(), ServingStatus::Serving, "{service:?}");
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_lists_and_describes_the_service() {
    let h = Harness::start(Options::default()).await;
    let mut reflection = ServerReflectionClient::new(channel(&h).await);
    let requests = [
        MessageRequest::ListServices(String::new()),
        MessageRequest::FileContainingSymbol(order_fsm_grpc::proto::SERVICE_NAME.into()),
    ]
    .map(|m| ServerReflectionRequest {
        host: String::new(),
        message_request: Some(m),
    });
    let mut responses = reflection
        .server_reflection_info(tokio_stream::iter(requests))
        .await
        .unwrap()
        .into_inner();
    let first = responses.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = first.message_response else {
        panic!("unexpected {first:?}");
    };
    let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
    assert!(names.contains(&"order_fsm.v1.OrderService"), "{names:?}");
    assert!(names.contains(&"grpc.health.v1.Health"), "{names:?}");
    let second = responses.message().await.unwrap().unwrap();
    let Some(MessageResponse::FileDescriptorResponse(files)) = second.message_response else {
        panic!("unexpected {second:?}");
    };
    assert!(!files.file_descriptor_proto.is_empty());
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_can_be_turned_off() {
    let h = Harness::start(Options {
        config: order_fsm_grpc::ServerConfig::default().with_reflection(false),
        ..Options::default()
    })
    .await;
    let mut reflection = ServerReflectionClient::new(channel(&h).await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let status = reflection
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unimplemented, "{status:?}");
    // The order service itself still answers.
    let mut health = HealthClient::new(channel(&h).await);
    let reply = health
        .check(HealthCheckRequest {
            service: order_fsm_grpc::proto::SERVICE_NAME.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.status(), ServingStatus::Serving);
    h.stop().await;
}
