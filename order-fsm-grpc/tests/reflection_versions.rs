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

/// `async fn $name(channel) -> (service names listed, whether the order service could be
/// described)`, asked in reflection protocol `$version` (the two have the same messages in
/// different generated modules).
macro_rules! ask {
    ($name:ident, $version:ident) => {
        async fn $name(channel: tonic::transport::Channel) -> (Vec<String>, bool) {
            use $version::server_reflection_request::MessageRequest;
            use $version::server_reflection_response::MessageResponse;
            let requests = [
                MessageRequest::ListServices(String::new()),
                MessageRequest::FileContainingSymbol(SERVICE_NAME.into()),
            ]
            .map(|m| $version::ServerReflectionRequest {
                host: String::new(),
                message_request: Some(m),
            });
            let mut client =
                $version::server_reflection_client::ServerReflectionClient::new(channel);
            let mut responses = client
                .server_reflection_info(tokio_stream::iter(requests))
                .await
                .expect(concat!(stringify!($version), " ServerReflectionInfo"))
                .into_inner();
            let first = responses.message().await.unwrap().unwrap();
            let Some(MessageResponse::ListServicesResponse(list)) = first.message_response else {
                panic!("{}: unexpected {first:?}", stringify!($version));
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
    };
}

ask!(ask_v1, v1);
ask!(ask_v1alpha, v1alpha);

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
