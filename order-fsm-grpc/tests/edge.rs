//! The listener's edge: requests the server cannot decode answer `INVALID_ARGUMENT` naming
//! what was wrong (a client's fault, not to be retried), not `INTERNAL`, and reach nothing;
//! a client that connects and says nothing is closed; connections beyond the limit wait;
//! every rejection is logged without customer data, rate-limited.

mod common;

use bytes::{Buf, BufMut};
use std::time::{Duration, Instant};

use common::{Harness, Options};
use order_fsm_grpc::proto;
use order_fsm_grpc::ServerConfig;
use prost::Message;
use tokio::io::AsyncReadExt;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::{Code, Status};

/// Sends and receives bytes as they are: a client that can say anything.
#[derive(Clone, Copy, Default)]
struct RawBytes;

impl Codec for RawBytes {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = Self;
    type Decoder = Self;
    fn encoder(&mut self) -> Self {
        Self
    }
    fn decoder(&mut self) -> Self {
        Self
    }
}

impl Encoder for RawBytes {
    type Item = Vec<u8>;
    type Error = Status;
    fn encode(&mut self, item: Vec<u8>, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        buf.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawBytes {
    type Item = Vec<u8>;
    type Error = Status;
    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        Ok(Some(buf.copy_to_bytes(buf.remaining()).to_vec()))
    }
}

async fn call(h: &Harness, method: &'static str, body: Vec<u8>) -> Result<Vec<u8>, Status> {
    let channel = tonic::transport::Channel::from_shared(h.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let path = PathAndQuery::from_static(method);
    grpc.unary(tonic::Request::new(body), path, RawBytes)
        .await
        .map(tonic::Response::into_inner)
}

const PLACE: &str = "/order_fsm.v1.OrderService/PlaceOrder";

fn place_request(purchase: proto::Purchase) -> Vec<u8> {
    proto::PlaceOrderRequest {
        purchase: Some(purchase),
        idempotency_key: None,
    }
    .encode_to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_requests_are_invalid_argument_and_reach_nothing() {
    let h = Harness::start(Options::default()).await;

    // The raw client itself works: a well-formed request is placed.
    let purchase = proto::Purchase::from(&order_fsm::Purchase::example());
    let answer = call(&h, PLACE, place_request(purchase.clone()))
        .await
        .expect("a well-formed request is placed");
    let placed = proto::PlaceOrderResponse::decode(&answer[..]).unwrap();
    assert_eq!(placed.status, "processing");

    // Invalid UTF-8 in a string field: the message names the message and field.
    let mut bytes = place_request(proto::Purchase {
        customer_email: "zz-marker@example.com".into(),
        ..purchase
    });
    let at = bytes
        .windows(9)
        .position(|w| w == b"zz-marker")
        .expect("the e-mail is in the encoding");
    bytes[at] = 0xff;
    let status = call(&h, PLACE, bytes).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("customer_email"),
        "the field is named: {}",
        status.message()
    );

    // Garbage bytes (a truncated varint, then a field of an impossible wire type).
    for garbage in [vec![0xff; 12], vec![0x0f, 0x01, 0x02]] {
        let status = call(&h, PLACE, garbage.clone()).await.unwrap_err();
        assert_eq!(
            status.code(),
            Code::InvalidArgument,
            "{garbage:?}: {status:?}"
        );
    }

    // Errors of the server itself keep their codes: an unknown order is NOT_FOUND.
    let get = proto::GetOrderRequest {
        order_id: order_fsm::OrderId::random().to_string(),
    };
    let status = call(
        &h,
        "/order_fsm.v1.OrderService/GetOrder",
        get.encode_to_vec(),
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");

    // Only the well-formed placement reached the runner (it had time to apply more).
    let client = h.client().await;
    let id: order_fsm::OrderId = placed.order_id.parse().unwrap();
    common::read_until(&client, id, |_| true).await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(h.store.len(), 1);
    h.stop().await;
}

/// Reads until the server closes the connection; how long that took, `None` if it did not
/// within `limit`.
async fn closed_within(stream: &mut tokio::net::TcpStream, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout_at((start + limit).into(), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(start.elapsed()),
            Ok(Ok(_)) => {}
            Err(_) => return None,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_says_nothing_is_closed() {
    let config = ServerConfig::default().with_connection_limits(1_024, Duration::from_millis(500));
    let h = Harness::start(Options {
        config,
        ..Options::default()
    })
    .await;
    let mut silent = tokio::net::TcpStream::connect(h.addr).await.unwrap();
    let closed = closed_within(&mut silent, Duration::from_secs(10))
        .await
        .expect("a silent connection was still open after 10 s");
    assert!(
        closed >= Duration::from_millis(400),
        "closed after {closed:?}"
    );
    // A real client is unaffected.
    let client = h.client().await;
    client
        .place_order(&order_fsm::Purchase::example(), None)
        .await
        .unwrap();
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limit_wait_for_a_free_one() {
    let config = ServerConfig::default().with_connection_limits(1, Duration::from_secs(30));
    let h = Harness::start(Options {
        config,
        ..Options::default()
    })
    .await;
    let holder = tokio::net::TcpStream::connect(h.addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let url = h.url();
    let call = tokio::spawn(async move {
        let client = order_fsm_grpc::OrderClient::connect(order_fsm_grpc::ClientConfig::new(url))
            .await
            .unwrap();
        client
            .place_order(&order_fsm::Purchase::example(), None)
            .await
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!call.is_finished(), "served while the only slot was taken");
    drop(holder);
    let placed = tokio::time::timeout(Duration::from_secs(20), call)
        .await
        .expect("not served once the slot was free")
        .unwrap()
        .unwrap();
    assert_eq!(placed.status, "processing");
    h.stop().await;
}

#[tokio::test]
async fn rejections_are_logged_without_customer_data_and_rate_limited() {
    let captured = order_fsm::testing::CapturedLog::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let h = Harness::start(Options::default()).await;
    let client = h.client().await;
    let mut purchase = order_fsm::Purchase::example();
    purchase.customer_email = "secret-person@example".into(); // no top-level domain
    for _ in 0..30 {
        let refused = client.place_order(&purchase, None).await.unwrap_err();
        assert_eq!(refused.code(), Some(tonic::Code::InvalidArgument));
    }
    h.stop().await;
    let log = captured.text();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("call rejected"))
        .collect();
    assert!(!lines.is_empty(), "no rejection logged: {log}");
    assert!(lines.len() <= 20, "not rate-limited: {} lines", lines.len());
    for expected in [
        "WARN",
        "/order_fsm.v1.OrderService/PlaceOrder",
        "InvalidArgument",
        "customer_email",
    ] {
        assert!(
            lines[0].contains(expected),
            "{expected} missing from {}",
            lines[0]
        );
    }
    assert!(
        !log.contains("secret-person"),
        "customer data in the log: {log}"
    );
}
