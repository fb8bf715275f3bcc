//! Starting without a broker: provisioning gives up within a bounded time, with an error
//! that names the address it tried and is classified as retryable.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use order_fsm_kafka::{provision_topics, KafkaConfig};

/// A loopback address nothing listens on: a port the OS handed out, then released.
fn closed_port() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let addr = listener.local_addr().expect("local address");
    drop(listener);
    addr.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provisioning_without_a_broker_fails_in_time_and_names_the_address() {
    let brokers = closed_port();
    let config = KafkaConfig::new(brokers.clone());
    let started = Instant::now();
    let outcome = tokio::time::timeout(Duration::from_secs(20), provision_topics(&config, 1))
        .await
        .expect("provision_topics returns within 20 s without a broker");
    let elapsed = started.elapsed();
    let error = outcome.expect_err("no broker listens there");
    let message = error.to_string();
    assert!(
        message.contains(&brokers),
        "the error names the brokers it tried ({brokers}): {message}"
    );
    assert!(
        message.contains("create topics"),
        "the error says what it was doing: {message}"
    );
    assert!(
        error.is_retryable(),
        "an unanswering broker is retryable: {error:?}"
    );
    assert!(
        order_fsm::Error::from(error).is_retryable(),
        "and stays retryable as a core error"
    );
    eprintln!("provision_topics gave up after {elapsed:?}: {message}");
}
