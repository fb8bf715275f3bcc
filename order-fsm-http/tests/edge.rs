//! The listener's limits over a real loopback socket: what a slow, idle or hostile client
//! meets (see `HttpEdge`), and the rejection log.

use std::sync::Arc;
use std::time::{Duration, Instant};

use order_fsm::{Lifecycle, MemoryQueue, MemoryStore};
use order_fsm_http::{HttpEdge, HttpError, RouterBuilder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The gateway with `edge` on a loopback port.
async fn serve(edge: HttpEdge) -> std::net::SocketAddr {
    let app = RouterBuilder::new(
        Arc::new(Lifecycle::ecommerce()),
        Arc::new(MemoryQueue::new()),
        Arc::new(MemoryStore::new()),
    )
    .build();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { edge.serve(listener, app, std::future::pending()).await });
    addr
}

/// Reads until the server closes the connection (or `limit` passes); what it sent and
/// how long it took to close, `None` if it did not.
async fn read_to_close(stream: &mut TcpStream, limit: Duration) -> (String, Option<Duration>) {
    let start = Instant::now();
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at((start + limit).into(), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                return (
                    String::from_utf8_lossy(&received).into(),
                    Some(start.elapsed()),
                )
            }
            Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
            Err(_) => return (String::from_utf8_lossy(&received).into(), None),
        }
    }
}

fn quick() -> HttpEdge {
    HttpEdge::default()
        .with_head_timeout(Duration::from_millis(500))
        .with_request_timeout(Duration::from_millis(800))
}

#[tokio::test]
async fn a_client_dribbling_its_head_is_cut_off() {
    let addr = serve(quick()).await;
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /orders/x HTTP/1.1\r\nHost: a\r\n")
        .await
        .unwrap();
    let (_, closed) = read_to_close(&mut slow, Duration::from_secs(10)).await;
    let closed = closed.expect("the connection was still open after 10 s");
    assert!(
        closed >= Duration::from_millis(400),
        "closed after {closed:?}"
    );
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let addr = serve(quick()).await;
    let mut idle = TcpStream::connect(addr).await.unwrap();
    let id = order_fsm::OrderId::random();
    let request = format!("GET /orders/{id} HTTP/1.1\r\nHost: a\r\n\r\n");
    idle.write_all(request.as_bytes()).await.unwrap();
    let (answer, closed) = read_to_close(&mut idle, Duration::from_secs(10)).await;
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
    assert!(
        closed.is_some(),
        "the idle connection was still open after 10 s"
    );
}

#[tokio::test]
async fn a_body_that_never_arrives_is_answered_408() {
    let addr = serve(quick()).await;
    let mut slow = TcpStream::connect(addr).await.unwrap();
    let head = "POST /orders HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n\
                Content-Length: 500\r\n\r\n{\"product\":";
    slow.write_all(head.as_bytes()).await.unwrap();
    let (answer, closed) = read_to_close(&mut slow, Duration::from_secs(10)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert!(closed.is_some());
}

#[tokio::test]
async fn connections_beyond_the_limit_wait_for_a_free_one() {
    let addr = serve(
        HttpEdge::default()
            .with_max_connections(1)
            .with_head_timeout(Duration::from_secs(30)),
    )
    .await;
    let holder = TcpStream::connect(addr).await.unwrap();
    // Let the server accept the holder before the second connection arrives.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut second = TcpStream::connect(addr).await.unwrap();
    let id = order_fsm::OrderId::random();
    let request = format!("GET /orders/{id} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    second.write_all(request.as_bytes()).await.unwrap();
    let (answer, _) = read_to_close(&mut second, Duration::from_millis(500)).await;
    assert_eq!(
        answer, "",
        "answered while the only connection slot was taken"
    );
    drop(holder);
    let (answer, closed) = read_to_close(&mut second, Duration::from_secs(10)).await;
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer:?}");
    assert!(closed.is_some());
}

#[tokio::test]
async fn a_request_head_over_16_kib_is_431() {
    let addr = serve(quick()).await;
    let mut client = TcpStream::connect(addr).await.unwrap();
    let big = "x".repeat(20 * 1024);
    let request = format!("GET /orders/1 HTTP/1.1\r\nHost: a\r\nX-Big: {big}\r\n\r\n");
    let _ = client.write_all(request.as_bytes()).await;
    let (answer, _) = read_to_close(&mut client, Duration::from_secs(10)).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer:?}");
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
    let addr = serve(quick()).await;
    let http = reqwest::Client::new();
    let mut bad = serde_json::to_value(order_fsm::Purchase::example()).unwrap();
    bad["customer_email"] = "secret-person@example.org".into();
    bad["price"] = "-1.00".into();
    for _ in 0..30 {
        let answer = http
            .post(format!("http://{addr}/orders"))
            .json(&bad)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 400);
    }
    let log = captured.text();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("request rejected"))
        .collect();
    assert!(!lines.is_empty(), "no rejection logged: {log}");
    assert!(lines.len() <= 20, "not rate-limited: {} lines", lines.len());
    let first = lines[0];
    for expected in [
        "WARN",
        "route=/orders",
        "status=400",
        "field=\"price\"",
        "method=POST",
    ] {
        assert!(first.contains(expected), "{expected} missing from {first}");
    }
    assert!(
        !log.contains("secret-person"),
        "customer data in the log: {log}"
    );
}

#[test]
fn tls_material_is_checked_when_set() {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let (cert, key) = (certified.cert.pem(), certified.key_pair.serialize_pem());
    let edge = HttpEdge::default()
        .with_tls(cert.as_bytes(), key.as_bytes())
        .unwrap();
    assert!(edge.is_tls());
    assert!(!HttpEdge::default().is_tls());

    let refused = |result: Result<HttpEdge, HttpError>| match result {
        Err(error @ HttpError::Tls { .. }) => {
            assert!(!error.is_retryable());
            error.to_string()
        }
        other => panic!("not a TLS error: {other:?}"),
    };
    let no_cert = refused(HttpEdge::default().with_tls(b"", key.as_bytes()));
    assert_eq!(no_cert, "TLS certificate: no certificate in the PEM");
    let no_key = refused(HttpEdge::default().with_tls(cert.as_bytes(), b""));
    assert!(no_key.starts_with("TLS key: "), "{no_key}");
    let bad_ca = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    let bad_ca =
        refused(HttpEdge::default().with_mutual_tls(cert.as_bytes(), key.as_bytes(), Some(bad_ca)));
    assert!(bad_ca.starts_with("TLS client CA: "), "{bad_ca}");
}
