//! Requests the server cannot decode answer `INVALID_ARGUMENT` naming what was wrong (a
//! client's fault, not to be retried), not `INTERNAL` (a server fault that alerts and is
//! retried), and nothing reaches the runner.

mod common;

use bytes::{Buf, BufMut};
use common::{Harness, Options};
use order_fsm_grpc::proto;
use prost::Message;
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
