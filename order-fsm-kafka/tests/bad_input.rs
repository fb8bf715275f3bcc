//! Undecodable and rejected commands land in the dead-letter topic with a reason; the
//! stream goes on.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use common::{
    await_dead_letters, completed, eventually, header, produce_commands, Broker, Running,
};
use order_fsm::{Command, CommandSink, MemoryStore, OrderId, Purchase};
use order_fsm_kafka::{
    KafkaCommandSink, HEADER_OFFSET, HEADER_PARTITION, HEADER_REASON, HEADER_TOPIC,
};
use rand::RngCore;
use rdkafka::Message;

async fn dead_letters(broker: Broker) {
    let config = broker.config("bad-input", 2).await;
    let store = Arc::new(MemoryStore::new());
    let running = Running::dead_lettering(&config, Some(store.clone()));

    // Four bad messages, then five good orders.
    let mut random = vec![0u8; 64];
    rand::thread_rng().fill_bytes(&mut random);
    random[0] = 0xff; // never valid UTF-8, so never JSON
    let wrong_shape = br#"{"order":"nope","qty":3}"#.to_vec();
    let unknown_event = serde_json::to_vec(&Command::apply(OrderId::random(), "teleport")).unwrap();
    let missing_order = serde_json::to_vec(&Command::apply(OrderId::random(), "ship")).unwrap();
    let bad = [
        ("random bytes", random.clone()),
        ("wrong shape", wrong_shape),
        ("unknown event", unknown_event),
        ("missing order", missing_order),
    ];
    for (what, payload) in &bad {
        // The commands that decode are keyed by their order id, as a producer must (another
        // key would be dead-lettered by the source, see `key_mismatch.rs`); the rest by name.
        let key = serde_json::from_slice::<Command>(payload)
            .map_or_else(|_| (*what).to_owned(), |c| c.order_id().to_string());
        produce_commands(&config, &[(Some(key.as_str()), payload.as_slice())]).await;
    }
    let good: Vec<Command> = (0..5)
        .map(|_| Command::place(Purchase::example()))
        .collect();
    let ids: HashSet<OrderId> = good.iter().map(Command::order_id).collect();
    KafkaCommandSink::new(&config)
        .expect("command sink")
        .submit(&good)
        .await
        .expect("submit");

    eventually(
        "the valid orders to complete",
        Duration::from_secs(60),
        || {
            let done = completed(&store, &ids) == ids.len();
            async move { done }
        },
    )
    .await;
    let letters = await_dead_letters(&config, 4, Duration::from_secs(30)).await;
    running.stop().await;
    assert_eq!(letters.len(), 4, "exactly the four bad messages");
    for letter in &letters {
        let key = String::from_utf8_lossy(letter.key().expect("key")).into_owned();
        let reason = header(letter, HEADER_REASON).expect("reason header");
        assert_eq!(
            header(letter, HEADER_TOPIC).as_deref(),
            Some(config.commands_topic())
        );
        let partition: i32 = header(letter, HEADER_PARTITION)
            .expect("partition")
            .parse()
            .unwrap();
        let offset: i64 = header(letter, HEADER_OFFSET)
            .expect("offset")
            .parse()
            .unwrap();
        assert!(partition >= 0 && offset >= 0);
        eprintln!("{key:?} at {partition}/{offset}: {reason}");
        match bad.iter().find(|(what, _)| *what == key) {
            Some(("random bytes", payload)) | Some(("wrong shape", payload)) => {
                assert!(reason.contains("cannot decode"), "{key}: {reason}");
                assert_eq!(
                    letter.payload(),
                    Some(&payload[..]),
                    "original payload kept"
                );
            }
            Some(("unknown event", _)) => assert!(reason.contains("unknown event"), "{reason}"),
            None if reason.contains("not found") => {} // engine letters are keyed by order id
            _ if reason.contains("unknown event") => {}
            other => panic!("unexpected dead letter {key:?} {other:?}: {reason}"),
        }
    }
    let reasons: Vec<String> = letters
        .iter()
        .filter_map(|l| header(l, HEADER_REASON))
        .collect();
    assert_eq!(
        reasons
            .iter()
            .filter(|r| r.contains("cannot decode"))
            .count(),
        2
    );
    assert_eq!(
        reasons
            .iter()
            .filter(|r| r.contains("unknown event"))
            .count(),
        1
    );
    assert_eq!(
        reasons.iter().filter(|r| r.contains("not found")).count(),
        1
    );
}

against_both!(dead_letters);
