//! `intake --api-keys FILE` over TLS, as separate processes on tansu: each role against each
//! RPC and route (allowed calls get through, others are `PERMISSION_DENIED` / 403, no key or
//! a wrong one `UNAUTHENTICATED` / 401), a key removed from the file stops working without a
//! restart, listings show the reader masked personal data and the operator the full
//! record, and no key appears in anything the intake logged at `debug`.

mod common;

use std::time::Duration;

use common::{https, localhost_certificate, until, IntakeAndWorker};
use order_fsm::access::hash_key;
use order_fsm::testing::service_address;
use order_fsm::Purchase;
use order_fsm_grpc::proto::order_service_client::OrderServiceClient;
use order_fsm_grpc::proto::{self, GetOrderRequest};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::{Code, Request};

const SHOP: &str = "shop-key-3f9a61c2e8";
const OPERATOR: &str = "operator-key-b7d04e19aa";
const READER: &str = "reader-key-5c2e8f0d13";

fn key_file(keys: &[(&str, &str, &str)]) -> String {
    keys.iter()
        .map(|(name, role, key)| format!("{name} {role} {}\n", hash_key(key)))
        .collect()
}

/// `message` with `key` (if any) as a bearer token.
fn with_key<T>(message: T, key: Option<&str>) -> Request<T> {
    let mut request = Request::new(message);
    if let Some(key) = key {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {key}").parse().unwrap());
    }
    request
}

fn code<T>(result: &Result<T, tonic::Status>) -> Code {
    result.as_ref().map_or_else(|s| s.code(), |_| Code::Ok)
}

struct Calls {
    grpc: OrderServiceClient<Channel>,
    order_id: String,
}

impl Calls {
    /// The outcome (`Ok` or the status code) of each RPC with `key`.
    async fn each_rpc(&mut self, key: Option<&str>) -> Vec<(&'static str, Code)> {
        let id = self.order_id.clone();
        let purchase = Some(proto::Purchase::from(&Purchase::example()));
        let g = &mut self.grpc;
        let place = g
            .place_order(with_key(
                proto::PlaceOrderRequest {
                    purchase,
                    idempotency_key: None,
                },
                key,
            ))
            .await;
        let get = g
            .get_order(with_key(
                GetOrderRequest {
                    order_id: id.clone(),
                },
                key,
            ))
            .await;
        let list = g
            .list_orders(with_key(
                proto::ListOrdersRequest {
                    status: String::new(),
                    page_size: 1,
                    page_token: String::new(),
                },
                key,
            ))
            .await;
        let watch = g
            .watch_order(with_key(
                proto::WatchOrderRequest {
                    order_id: id.clone(),
                },
                key,
            ))
            .await;
        let apply = g
            .apply_event(with_key(
                proto::ApplyEventRequest {
                    order_id: id.clone(),
                    event: "no-such-event".into(),
                    expected_version: None,
                    reason: None,
                    idempotency_key: None,
                },
                key,
            ))
            .await;
        let cancel = g
            .cancel_order(with_key(
                proto::CancelOrderRequest {
                    order_id: id,
                    expected_version: Some(999),
                    reason: Some("test".into()),
                    idempotency_key: None,
                },
                key,
            ))
            .await;
        vec![
            ("place", code(&place)),
            ("get", code(&get)),
            ("list", code(&list)),
            ("watch", code(&watch)),
            ("apply_event", code(&apply)),
            ("cancel", code(&cancel)),
        ]
    }
}

fn http_request(method: &str, path: &str, key: Option<&str>, body: &str) -> String {
    let auth = key.map_or(String::new(), |k| format!("Authorization: Bearer {k}\r\n"));
    format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\n{auth}Content-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

fn status_of(answer: &str) -> u16 {
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_role_may_do_what_it_may_and_keys_never_show() {
    let Some(brokers) = service_address("ORDER_FSM_KAFKA_BROKERS") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (ca_pem, cert, key) = localhost_certificate(dir.path());
    let keys_path = dir.path().join("api-keys");
    std::fs::write(
        &keys_path,
        key_file(&[
            ("backend", "shop", SHOP),
            ("ops", "operator", OPERATOR),
            ("reports", "reader", READER),
        ]),
    )
    .unwrap();
    let log = dir.path().join("intake.log");
    let keys = keys_path.to_str().unwrap();
    let processes = IntakeAndWorker::start_logging(
        &brokers,
        "intake-access",
        // Orders stay in `processing`: events and cancels have something to act on.
        &["--dwell-ms", "600000"],
        &["--tls-cert", &cert, "--tls-key", &key, "--api-keys", keys],
        Some(&log),
    );

    let endpoint = Endpoint::from_shared(format!("https://{}", processes.grpc))
        .unwrap()
        .tls_config(
            ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(&ca_pem))
                .domain_name("localhost"),
        )
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let channel = loop {
        match endpoint.connect().await {
            Ok(channel) => break channel,
            Err(_) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("the intake never listened: {e}"),
        }
    };
    let mut grpc = OrderServiceClient::new(channel);
    let placed = grpc
        .place_order(with_key(
            proto::PlaceOrderRequest {
                purchase: Some(proto::Purchase::from(&Purchase::example())),
                idempotency_key: None,
            },
            Some(SHOP),
        ))
        .await
        .expect("the shop places an order")
        .into_inner();
    let order_id = placed.order_id.clone();
    // The read model sees it (reads before that answer "not yet visible").
    until("the order to be visible", Duration::from_secs(60), || {
        let mut grpc = grpc.clone();
        let id = order_id.clone();
        async move {
            grpc.get_order(with_key(GetOrderRequest { order_id: id }, Some(READER)))
                .await
                .is_ok()
        }
    })
    .await;
    let mut calls = Calls { grpc, order_id };

    use Code::{Ok as Allowed, PermissionDenied as Denied, Unauthenticated as NoKey};
    let through = |c: Code| !matches!(c, Code::Unauthenticated | Code::PermissionDenied);
    let expect = [
        (Some(SHOP), [true, true, false, false, false, false]),
        (Some(OPERATOR), [true, true, true, true, true, true]),
        (Some(READER), [false, true, true, true, false, false]),
    ];
    for (key, allowed) in expect {
        let outcomes = calls.each_rpc(key).await;
        for ((rpc, code), allowed) in outcomes.iter().zip(allowed) {
            if allowed {
                assert!(through(*code), "{key:?} {rpc}: {code:?}");
            } else {
                assert_eq!(*code, Denied, "{key:?} {rpc}");
            }
        }
    }
    let (place, get) = {
        let outcomes = calls.each_rpc(Some(SHOP)).await;
        (outcomes[0].1, outcomes[1].1)
    };
    assert_eq!((place, get), (Allowed, Allowed), "the shop's calls succeed");
    for key in [None, Some("not-a-key-at-all")] {
        for (rpc, code) in calls.each_rpc(key).await {
            assert_eq!(code, NoKey, "{key:?} {rpc}");
        }
    }

    // A shop reads the orders it placed, not another caller's.
    let by_ops = calls
        .grpc
        .place_order(with_key(
            proto::PlaceOrderRequest {
                purchase: Some(proto::Purchase::from(&Purchase::example())),
                idempotency_key: None,
            },
            Some(OPERATOR),
        ))
        .await
        .unwrap()
        .into_inner()
        .order_id;
    let get_as = |key: &'static str| {
        let mut grpc = calls.grpc.clone();
        let id = by_ops.clone();
        async move {
            code(
                &grpc
                    .get_order(with_key(GetOrderRequest { order_id: id }, Some(key)))
                    .await,
            )
        }
    };
    until(
        "the operator's order to be visible",
        Duration::from_secs(30),
        || async { get_as(READER).await == Allowed },
    )
    .await;
    assert_eq!(get_as(SHOP).await, Denied, "not the shop's order");
    assert_eq!(get_as(OPERATOR).await, Allowed);
    let answer = https(
        &processes.http,
        &ca_pem,
        &http_request("GET", &format!("/orders/{by_ops}"), Some(SHOP), ""),
    )
    .await
    .unwrap();
    assert_eq!(status_of(&answer), 403, "{answer}");

    // Listings: the reader sees masked personal data, the operator the full record.
    let listed = |key: &'static str| {
        let mut grpc = calls.grpc.clone();
        async move {
            let page = grpc
                .list_orders(with_key(
                    proto::ListOrdersRequest {
                        status: String::new(),
                        page_size: 100,
                        page_token: String::new(),
                    },
                    Some(key),
                ))
                .await
                .unwrap()
                .into_inner();
            let order = page.orders.into_iter().next().expect("an order listed");
            order.purchase.unwrap()
        }
    };
    let example = Purchase::example();
    let (masked, full) = (listed(READER).await, listed(OPERATOR).await);
    assert_eq!(full.customer_email, example.customer_email);
    assert_eq!(full.shipping_address, example.shipping_address);
    assert_ne!(masked.customer_email, example.customer_email);
    assert!(
        masked.customer_email.contains("***@"),
        "{}",
        masked.customer_email
    );
    assert!(masked.shipping_address.ends_with("***"));
    assert_eq!(
        masked.product, example.product,
        "only personal data is masked"
    );

    // The typed client sends a key given in its configuration (and never shows it).
    let typed = |key: Option<&str>| {
        let mut config = order_fsm_grpc::ClientConfig::new(format!("https://{}", processes.grpc))
            .with_tls(ca_pem.clone(), "localhost");
        if let Some(key) = key {
            config = config.with_api_key(key);
        }
        assert!(!format!("{config:?}").contains(SHOP));
        order_fsm_grpc::OrderClient::connect(config)
    };
    let shop = typed(Some(SHOP)).await.unwrap();
    shop.place_order(&Purchase::example(), None)
        .await
        .expect("the typed client places with its key");
    let anonymous = typed(None).await.unwrap();
    let refused = anonymous
        .place_order(&Purchase::example(), None)
        .await
        .unwrap_err();
    assert!(
        format!("{refused:?}").contains("Unauthenticated"),
        "{refused:?}"
    );

    // HTTP over TLS: the same layer, the same roles.
    let purchase = serde_json::to_string(&Purchase::example()).unwrap();
    let order = format!("/orders/{}", calls.order_id);
    let events = format!("{order}/events");
    let event = r#"{"event":"prepare"}"#;
    let cases: [(&str, &str, Option<&str>, &str, u16); 9] = [
        ("POST", "/orders", Some(SHOP), &purchase, 202),
        ("POST", "/orders", Some(READER), &purchase, 403),
        ("POST", "/orders", None, &purchase, 401),
        ("GET", &order, Some(READER), "", 200),
        ("GET", &order, Some("wrong"), "", 401),
        ("POST", &events, Some(SHOP), event, 403),
        ("POST", &events, Some(OPERATOR), event, 202),
        ("GET", "/dashboard", Some(SHOP), "", 403),
        ("GET", "/dashboard", Some(READER), "", 200),
    ];
    for (method, path, key, body, status) in cases {
        let answer = https(
            &processes.http,
            &ca_pem,
            &http_request(method, path, key, body),
        )
        .await
        .unwrap();
        assert_eq!(
            status_of(&answer),
            status,
            "{method} {path} {key:?}: {answer}"
        );
        if status == 401 {
            assert!(answer
                .to_ascii_lowercase()
                .contains("www-authenticate: bearer"));
        }
    }

    // Who did what travels with the commands: the shop's placement and the operator's
    // `prepare` (over HTTP) carry their keys' names in the records on the transitions topic
    // and in the order's history; the read model shows them too.
    let topic = format!("{}order-transitions", processes.prefix);
    let id: order_fsm::OrderId = calls.order_id.parse().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut actors = loop {
        let (brokers, topic) = (brokers.clone(), topic.clone());
        let records = tokio::task::spawn_blocking(move || {
            let all = common::topic_records(&brokers, &topic);
            common::read_transitions(&brokers, &topic, usize::try_from(all).unwrap_or(0))
        })
        .await
        .unwrap();
        let ours: Vec<(u64, Option<String>)> = records
            .into_iter()
            .filter(|l| l.record.order_id == id)
            .map(|l| (l.record.version, l.record.actor))
            .collect();
        if ours.len() >= 2 {
            break ours;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the operator's transition never reached the topic: {ours:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    actors.sort();
    assert_eq!(
        actors[..2],
        [(1, Some("backend".to_owned())), (2, Some("ops".to_owned()))]
    );
    let history = calls
        .grpc
        .get_order(with_key(
            GetOrderRequest {
                order_id: calls.order_id.clone(),
            },
            Some(OPERATOR),
        ))
        .await
        .unwrap()
        .into_inner()
        .history;
    let seen: Vec<Option<String>> = history.into_iter().map(|t| t.actor).collect();
    assert!(
        seen.len() >= 2 && seen[0].as_deref() == Some("backend"),
        "{seen:?}"
    );

    // The reader's key is removed: refused within a few seconds, no restart.
    std::fs::write(
        &keys_path,
        key_file(&[("backend", "shop", SHOP), ("ops", "operator", OPERATOR)]),
    )
    .unwrap();
    until(
        "the removed key to stop working",
        Duration::from_secs(10),
        || {
            let mut grpc = calls.grpc.clone();
            let id = calls.order_id.clone();
            async move {
                let answer = grpc
                    .get_order(with_key(GetOrderRequest { order_id: id }, Some(READER)))
                    .await;
                code(&answer) == NoKey
            }
        },
    )
    .await;
    let still = calls.each_rpc(Some(OPERATOR)).await;
    assert!(still.iter().all(|(_, c)| through(*c)), "{still:?}");

    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("DEBUG") || logged.contains("debug"),
        "the log was captured"
    );
    for key in [SHOP, OPERATOR, READER] {
        assert!(!logged.contains(key), "a key appears in the intake's log");
    }
}
