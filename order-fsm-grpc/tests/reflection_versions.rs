//! Server reflection answers both protocol versions: `grpc.reflection.v1` and the older
//! `grpc.reflection.v1alpha` that Python's grpcio-reflection and older grpcurl speak.

mod common;

use common::{Harness, Options};
use order_fsm_grpc::proto::SERVICE_NAME;
use tonic_reflection::pb::{v1, v1alpha};

async fn channel(h: &Harness) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(h.url())
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// The service names a v1 server lists, and whether it can describe the order service.
async fn ask_v1(channel: tonic::transport::Channel) -> (Vec<String>, bool) {
    use v1::server_reflection_request::MessageRequest;
    use v1::server_reflection_response::MessageResponse;
    let requests = [
        MessageRequest::ListServices(String::new()),
        MessageRequest::FileContainingSymbol(SERVICE_NAME.into()),
    ]
    .map(|m| v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(m),
    });
    let mut client = v1::server_reflection_client::ServerReflectionClient::new(channel);
    let mut responses = client
        .server_reflection_info(tokio_stream::iter(requests))
        .await
        .expect("v1 ServerReflectionInfo")
        .into_inner();
    let first = responses.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = first.message_response else {
        panic!("v1: unexpected {first:?}");
    };
    let second = responses.message().await.unwrap().unwrap();
    let described = matches!(
        second.message_response,
        Some(MessageResponse::FileDescriptorResponse(files))
            if !files.file_descriptor_proto.is_empty()
    );
    (
        list.service.into_iter().map(|s| s.name).collect(),
        described,
    )
}

/// The same questions in the v1alpha protocol.
async fn ask_v1alpha(channel: tonic::transport::Channel) -> (Vec<String>, bool) {
    use v1alpha::server_reflection_request::MessageRequest;
    use v1alpha::server_reflection_response::MessageResponse;
    let requests = [
        MessageRequest::ListServices(String::new()),
        MessageRequest::FileContainingSymbol(SERVICE_NAME.into()),
    ]
    .map(|m| v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(m),
    });
    let mut client = v1alpha::server_reflection_client::ServerReflectionClient::new(channel);
    let mut responses = client
        .server_reflection_info(tokio_stream::iter(requests))
        .await
        .expect("v1alpha ServerReflectionInfo")
        .into_inner();
    let first = responses.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = first.message_response else {
        panic!("v1alpha: unexpected {first:?}");
    };
    let second = responses.message().await.unwrap().unwrap();
    let described = matches!(
        second.message_response,
        Some(MessageResponse::FileDescriptorResponse(files))
            if !files.file_descriptor_proto.is_empty()
    );
    (
        list.service.into_iter().map(|s| s.name).collect(),
        described,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_answers_v1_and_v1alpha_clients() {
    let h = Harness::start(Options::default()).await;
    let channel = channel(&h).await;
    for (version, (names, described)) in [
        ("v1", ask_v1(channel.clone()).await),
        ("v1alpha", ask_v1alpha(channel).await),
    ] {
        for expected in [
            SERVICE_NAME,
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
        ] {
            assert!(
                names.iter().any(|n| n == expected),
                "{version} lists {expected}: {names:?}"
            );
        }
        assert!(described, "{version} describes {SERVICE_NAME}");
    }
    h.stop().await;
}
