//! A command whose message key is not its order id is dead-lettered by the source with a
//! reason naming both, and never reaches the runner; a command without a key is accepted.
//! Before, a mis-keyed command was processed like any other, so the order's later (rightly
//! keyed) commands could land on another partition, and so on another worker.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use common::{
    await_dead_letters, completed, eventually, header, produce_commands, Broker, Running,
};
use order_fsm::{Command, CommandSink, MemoryStore, OrderId, Purchase};
use order_fsm_kafka::{KafkaCommandSink, HEADER_REASON, HEADER_TOPIC};
use rdkafka::Message;

async fn mis_keyed_commands_are_dead_lettered(broker: Broker) {
    let config = broker.config("key-mismatch", 2).await;
    let store = Arc::new(MemoryStore::new());
    let running = Running::dead_lettering(&config, Some(store.clone()));

    let json = |command: &Command| serde_json::to_vec(command).expect("json");
    // Keyed by another order's id.
    let other_order = Command::place(Purchase::example());
    let other_key = OrderId::random().to_string();
    // Keyed by the right id in upper case: the partitioner hashes the key's bytes, so this
    // is another partition just the same.
    let upper_case = Command::place(Purchase::example());
    let upper_key = upper_case.order_id().to_string().to_uppercase();
    // No key at all: accepted (producers that do not key exist).
    let keyless = Command::place(Purchase::example());
    produce_commands(
        &config,
        &[
            (Some(other_key.as_str()), &json(&other_order)),
            (Some(upper_key.as_str()), &json(&upper_case)),
            (None, &json(&keyless)),
        ],
    )
    .await;
    let keyed = Command::place(Purchase::example());
    KafkaCommandSink::new(&config)
        .expect("command sink")
        .submit(std::slice::from_ref(&keyed))
        .await
        .expect("submit");

    let accepted: HashSet<OrderId> = [keyless.order_id(), keyed.order_id()].into();
    eventually(
        "the keyless and the keyed order to complete",
        Duration::from_secs(60),
        || {
            let done = completed(&store, &accepted) == accepted.len();
            async move { done }
        },
    )
    .await;
    let letters = await_dead_letters(&config, 2, Duration::from_secs(30)).await;
    running.stop().await;
    assert_eq!(letters.len(), 2, "exactly the two mis-keyed commands");
    for (command, key) in [(&other_order, &other_key), (&upper_case, &upper_key)] {
        let letter = letters
            .iter()
            .find(|l| l.key() == Some(key.as_bytes()))
            .unwrap_or_else(|| panic!("a dead letter keyed {key}"));
        assert_eq!(
            header(letter, HEADER_REASON).as_deref(),
            Some(
                format!(
                    "message key `{key}` is not the command's order id `{}`",
                    command.order_id()
                )
                .as_str()
            )
        );
        assert_eq!(
            header(letter, HEADER_TOPIC).as_deref(),
            Some(config.commands_topic())
        );
        assert_eq!(letter.payload(), Some(&json(command)[..]), "payload kept");
        assert!(
            store.get_now(command.order_id()).is_none(),
            "a mis-keyed command never reaches the runner"
        );
    }
}

against_both!(mis_keyed_commands_are_dead_lettered);
