//! TLS round trip with a certificate generated in the test.

mod common;

use std::sync::Arc;

use common::read_until;
use order_fsm::{Lifecycle, MemoryQueue, MemoryStore, Purchase, Runner};
use order_fsm_grpc::{ClientConfig, OrderClient, OrderServiceBuilder, ServerConfig, TlsIdentity};
use tokio::net::TcpListener;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_round_trip() {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let cert_pem = certified.cert.pem();
    let key_pem = certified.key_pair.serialize_pem();

    let queue = MemoryQueue::new();
    let store = Arc::new(MemoryStore::new());
    let runner = Runner::builder(Lifecycle::ecommerce())
        .with_store(store.clone())
        .build()
        .unwrap();
    let source = queue.subscribe();
    let (stop_runner, runner_rx) = tokio::sync::oneshot::channel::<()>();
    let runner = tokio::spawn(async move {
        runner
            .run(source, async {
                let _ = runner_rx.await;
            })
            .await
            .unwrap()
    });

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        OrderServiceBuilder::new(Lifecycle::ecommerce())
            .with_commands(Arc::new(queue.clone()))
            .with_store(store.clone())
            .with_config(
                ServerConfig::default().with_tls(TlsIdentity::from_pem(cert_pem.clone(), key_pem)),
            )
            .serve_with_listener(listener, async {
                let _ = stop_rx.await;
            }),
    );

    let config = ClientConfig::new(format!("https://127.0.0.1:{port}"))
        .with_tls(cert_pem.clone(), "localhost");
    let client = OrderClient::connect(config).await.expect("TLS connect");
    let placed = client
        .place_order(&Purchase::example(), Some("tls"))
        .await
        .unwrap();
    let order = read_until(&client, placed.order_id, |_| true).await;
    assert_eq!(order.purchase, Purchase::example());

    // A plaintext client cannot talk to the TLS server.
    let plain = OrderClient::connect(ClientConfig::new(format!("http://127.0.0.1:{port}"))).await;
    if let Ok(plain) = plain {
        assert!(plain.get_order(placed.order_id).await.is_err());
    }
    // A client that does not trust the certificate is refused.
    let other = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let untrusting = ClientConfig::new(format!("https://127.0.0.1:{port}"))
        .with_tls(other.cert.pem(), "localhost");
    match OrderClient::connect(untrusting).await {
        Err(_) => {}
        Ok(c) => assert!(c.get_order(placed.order_id).await.is_err()),
    }

    let _ = stop.send(());
    server.await.unwrap().unwrap();
    let _ = stop_runner.send(());
    runner.await.unwrap();
}
