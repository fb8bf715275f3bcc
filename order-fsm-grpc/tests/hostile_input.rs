//! Every RPC against hostile field values, over a real loopback server (proptest, a bounded
//! number of cases in the normal test run): any text in any field (unicode, control
//! characters, kilobytes), any number, valid ids and garbage ones. The server never panics
//! and never answers `INTERNAL` or `UNKNOWN`: a refusal is the client's (`INVALID_ARGUMENT`
//! naming the field, `NOT_FOUND`, `FAILED_PRECONDITION`, ...).

mod common;

use std::sync::OnceLock;

use common::{Harness, Options};
use order_fsm_grpc::proto;
use proptest::prelude::*;
use tonic::Code;

/// One runtime and one server for every case.
fn harness() -> &'static (tokio::runtime::Runtime, Harness) {
    static HARNESS: OnceLock<(tokio::runtime::Runtime, Harness)> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let harness = runtime.block_on(Harness::start(Options::default()));
        (runtime, harness)
    })
}

/// A text field: usually hostile, sometimes plausible.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "\\PC{0,40}",
        ".{0,8}",
        "[0-9.\\- ]{0,12}",
        prop::collection::vec(any::<char>(), 0..300).prop_map(|c| c.into_iter().collect()),
        Just("x".repeat(5_000)),
        Just(order_fsm::OrderId::random().to_string()),
    ]
}

fn purchase() -> impl Strategy<Value = proto::Purchase> {
    (
        (text(), text(), text(), text()),
        (text(), text(), text(), text()),
        (any::<Option<u32>>(), prop::option::of(text())),
    )
        .prop_map(
            |(
                (product, price, payment_gateway, card_brand),
                (bank, region, shipping_address, customer_email),
                (quantity, category),
            )| {
                proto::Purchase {
                    product,
                    price,
                    payment_gateway,
                    card_brand,
                    bank,
                    region,
                    shipping_address,
                    customer_email,
                    quantity,
                    category,
                }
            },
        )
}

/// Fails the case if `status` is the server's fault rather than the client's.
fn clients_fault(status: &tonic::Status) -> Result<(), TestCaseError> {
    prop_assert!(
        !matches!(status.code(), Code::Internal | Code::Unknown),
        "server fault for hostile input: {status:?}"
    );
    if status.code() == Code::InvalidArgument {
        prop_assert!(!status.message().is_empty());
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn hostile_placements_are_refused_by_field(purchase in purchase(), key in prop::option::of(text())) {
        let (runtime, harness) = harness();
        runtime.block_on(async {
            let mut raw = harness.raw().await;
            let request = proto::PlaceOrderRequest { purchase: Some(purchase.clone()), idempotency_key: key.clone() };
            if let Err(status) = raw.place_order(request.clone()).await {
                clients_fault(&status)?;
            }
            let batch = proto::PlaceOrdersRequest { orders: vec![request.clone(), request] };
            if let Err(status) = raw.place_orders(batch).await {
                clients_fault(&status)?;
            }
            Ok::<(), TestCaseError>(())
        })?;
    }

    #[test]
    fn hostile_reads_and_events_are_refused(
        id in text(),
        event in text(),
        reason in prop::option::of(text()),
        key in prop::option::of(text()),
        version in any::<Option<u64>>(),
        status in text(),
        token in text(),
        page_size in any::<u32>(),
    ) {
        let (runtime, harness) = harness();
        runtime.block_on(async {
            let mut raw = harness.raw().await;
            if let Err(s) = raw.get_order(proto::GetOrderRequest { order_id: id.clone() }).await {
                clients_fault(&s)?;
            }
            let list = proto::ListOrdersRequest { status, page_size, page_token: token };
            if let Err(s) = raw.list_orders(list).await {
                clients_fault(&s)?;
            }
            let apply = proto::ApplyEventRequest {
                order_id: id.clone(),
                event,
                expected_version: version,
                reason: reason.clone(),
                idempotency_key: key.clone(),
            };
            if let Err(s) = raw.apply_event(apply).await {
                clients_fault(&s)?;
            }
            let cancel = proto::CancelOrderRequest { order_id: id, expected_version: version, reason, idempotency_key: key };
            if let Err(s) = raw.cancel_order(cancel).await {
                clients_fault(&s)?;
            }
            Ok::<(), TestCaseError>(())
        })?;
    }
}
