//! Poison messages: a 2 MB undecodable message and a placement whose product name is 1 MB
//! are dead-lettered, cut to a bound with their size and hash in headers, and the orders
//! behind them in the same partition complete. Before the bound, producing the dead letter
//! failed with `MessageSizeTooLarge` and the worker process exited at every restart.

use std::time::Duration;

use crate::against_both;
use crate::common::{await_dead_letters, header, Broker};
use crate::process::{assert_all_complete, one_at_a_time, place_orders, WorkerProcess};
use order_fsm::{Command, Purchase};
use order_fsm_kafka::{HEADER_ORIGINAL_SHA256, HEADER_ORIGINAL_SIZE, MAX_DEAD_LETTER_PAYLOAD};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message};

async fn poison_messages_do_not_stop_a_partition(broker: Broker) {
    let _alone = one_at_a_time().await;
    // One partition: the good orders queue right behind the poison.
    let config = broker.config("poison", 1).await;
    let mut producer = ClientConfig::new();
    producer
        .set("bootstrap.servers", config.brokers())
        .set("message.max.bytes", "10000000");
    for (key, value) in config.properties() {
        producer.set(key, value);
    }
    let producer: FutureProducer = producer.create().expect("producer");
    let raw = vec![0xffu8; 2_000_000];
    let mut purchase = Purchase::example();
    purchase.product = "x".repeat(1_000_000);
    let huge_placement = serde_json::to_vec(&Command::place(purchase)).expect("json");
    for (key, payload) in [("raw", &raw), ("placement", &huge_placement)] {
        producer
            .send(
                FutureRecord::to(config.commands_topic())
                    .key(key)
                    .payload(payload),
                Duration::from_secs(30),
            )
            .await
            .expect("produce a poison message");
    }
    let worker = WorkerProcess::start(&config, "poisoned", 0);
    let (ids, placing) = place_orders(&config, 200, Duration::from_millis(20));
    placing.await.expect("placing");
    assert_all_complete(&config, &ids, Duration::from_secs(60)).await;

    let letters = await_dead_letters(&config, 2, Duration::from_secs(30)).await;
    assert_eq!(letters.len(), 2, "one dead letter each");
    let mut sizes = Vec::new();
    for letter in &letters {
        let payload = letter.payload().expect("payload");
        assert_eq!(payload.len(), MAX_DEAD_LETTER_PAYLOAD, "cut to the bound");
        let size: usize = header(letter, HEADER_ORIGINAL_SIZE)
            .expect("original size")
            .parse()
            .expect("a number");
        let hash = header(letter, HEADER_ORIGINAL_SHA256).expect("original hash");
        assert_eq!(hash.len(), 64, "hex SHA-256");
        sizes.push(size);
    }
    sizes.sort_unstable();
    assert_eq!(sizes[1], raw.len());
    assert!(
        sizes[0] > 1_000_000,
        "the rejected placement, whole: {}",
        sizes[0]
    );
    drop(worker);
}

against_both!(poison_messages_do_not_stop_a_partition);
