//! Both wire formats on one topic: each message is read in the format its `ofsm-format`
//! header names, a message without it in the reader's configured format, and a header that
//! names an unknown format or lies about the payload sends the message to the dead-letter
//! topic with the reason. Packed transition records (ADR 8) land in the partition their
//! orders' commands are in, and followers read them as single records.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use common::{await_dead_letters, completed, eventually, header, read_topic, Broker, Running};
use order_fsm::{Command, CommandSink, Dwell, Lifecycle, MemorySink, MemoryStore, OrderId};
use order_fsm::{OrderStore, Purchase, Runner, TransitionRecord};
use order_fsm_kafka::{
    KafkaCommandSink, KafkaConfig, KafkaDeadLetterSink, KafkaFollower, KafkaTransitionSink,
    WireFormat, HEADER_FORMAT, HEADER_REASON,
};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message};
use tokio_util::sync::CancellationToken;

/// Produces `payload` under `key` to the commands topic, with a format header if given.
async fn produce(config: &KafkaConfig, key: &str, payload: &[u8], format: Option<&str>) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", config.brokers())
        .create()
        .expect("producer");
    let mut record = FutureRecord::to(config.commands_topic())
        .key(key)
        .payload(payload);
    if let Some(format) = format {
        record = record.headers(OwnedHeaders::new().insert(Header {
            key: HEADER_FORMAT,
            value: Some(format),
        }));
    }
    producer
        .send(record, Duration::from_secs(10))
        .await
        .expect("produce");
}

async fn mixed_formats(broker: Broker) {
    // Workers default to protobuf for messages without a header and publish protobuf.
    let proto = broker
        .config_with("wire-format", 2, |c| {
            c.with_wire_format(WireFormat::Protobuf)
        })
        .await;
    let json = proto.clone().with_wire_format(WireFormat::Json);
    let store = Arc::new(MemoryStore::new());
    let runner = Runner::builder(Lifecycle::ecommerce())
        .with_store(store.clone())
        .with_sink(Arc::new(KafkaTransitionSink::new(&proto).expect("sink")))
        .with_dead_letters(Arc::new(KafkaDeadLetterSink::new(&proto).expect("dlq")))
        .with_auto_advance(Dwell::None)
        .build()
        .expect("runner");
    let running = Running::start(Arc::new(runner), &proto);

    let by_json = Command::place(Purchase::example());
    let by_proto = Command::place(Purchase::example());
    let headerless = Command::place(Purchase::example());
    let ids: HashSet<OrderId> = [&by_json, &by_proto, &headerless]
        .iter()
        .map(|c| c.order_id())
        .collect();
    KafkaCommandSink::new(&json)
        .expect("json sink")
        .submit(std::slice::from_ref(&by_json))
        .await
        .expect("submit json");
    KafkaCommandSink::new(&proto)
        .expect("proto sink")
        .submit(std::slice::from_ref(&by_proto))
        .await
        .expect("submit proto");
    let key = headerless.order_id().to_string();
    let payload = order_fsm_proto::encode_command(&headerless).unwrap();
    produce(&proto, &key, &payload, None).await;
    // Bad: a format this version does not know; a header that lies about the payload.
    let unknown = Command::place(Purchase::example());
    let unknown_payload = serde_json::to_vec(&unknown).unwrap();
    produce(
        &proto,
        &unknown.order_id().to_string(),
        &unknown_payload,
        Some("avro"),
    )
    .await;
    let lying = Command::place(Purchase::example());
    let lying_payload = serde_json::to_vec(&lying).unwrap();
    produce(
        &proto,
        &lying.order_id().to_string(),
        &lying_payload,
        Some("proto"),
    )
    .await;

    eventually("three orders to complete", Duration::from_secs(60), || {
        let done = completed(&store, &ids) == ids.len();
        async move { done }
    })
    .await;
    let letters = await_dead_letters(&proto, 2, Duration::from_secs(30)).await;
    running.stop().await;

    let reasons: Vec<String> = letters
        .iter()
        .map(|l| header(l, HEADER_REASON).expect("reason"))
        .collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("unknown wire format `avro`")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("not a protobuf CommandRecord")),
        "{reasons:?}"
    );
    assert!(store.get(unknown.order_id()).await.unwrap().is_none());
    assert!(store.get(lying.order_id()).await.unwrap().is_none());

    // Every transition record is protobuf and says so.
    let published = read_topic(&proto, proto.transitions_topic()).await;
    assert_eq!(published.len(), 15, "three orders, five records each");
    for message in &published {
        assert_eq!(header(message, HEADER_FORMAT).as_deref(), Some("proto"));
        let record = order_fsm_proto::decode_transition(message.payload().unwrap()).unwrap();
        assert_eq!(message.key(), Some(record.order_id.to_string().as_bytes()));
    }

    // A follower configured for JSON reads them by their header.
    let records = follow_all(&json, 15).await;
    let keys: HashSet<(OrderId, u64)> = records.iter().map(|r| (r.order_id, r.version)).collect();
    assert_eq!(keys.len(), 15);
    assert!(records.iter().all(|r| ids.contains(&r.order_id)));
}

/// Every transition record a follower configured for single JSON records gets from
/// `config`'s transitions topic, once `expected` arrived.
async fn follow_all(config: &KafkaConfig, expected: usize) -> Vec<TransitionRecord> {
    let follower = KafkaFollower::builder(config, "wire-format")
        .build()
        .expect("follower");
    let sink = Arc::new(MemorySink::new());
    let stop = CancellationToken::new();
    let task = tokio::spawn(follower.run(sink.clone(), stop.clone().cancelled_owned()));
    eventually(
        "the follower to read every record",
        Duration::from_secs(60),
        || {
            let n = sink.records().len();
            async move { n >= expected }
        },
    )
    .await;
    stop.cancel();
    let report = task.await.expect("follower task").expect("follower");
    assert_eq!(report.dead_lettered, 0, "no record was undecodable");
    sink.records()
}

async fn packed(broker: Broker) {
    for format in [WireFormat::Json, WireFormat::Protobuf] {
        let config = broker
            .config_with("packed", 3, |c| {
                c.with_wire_format(format).with_packed_transitions(true)
            })
            .await;
        let store = Arc::new(MemoryStore::new());
        let runner = Runner::builder(Lifecycle::ecommerce())
            .with_store(store.clone())
            .with_sink(Arc::new(KafkaTransitionSink::new(&config).expect("sink")))
            .with_auto_advance(Dwell::None)
            .build()
            .expect("runner");
        let running = Running::start(Arc::new(runner), &config);
        let orders: Vec<Command> = (0..30)
            .map(|_| Command::place(Purchase::example()))
            .collect();
        let ids: HashSet<OrderId> = orders.iter().map(Command::order_id).collect();
        KafkaCommandSink::new(&config)
            .expect("command sink")
            .submit(&orders)
            .await
            .expect("submit");
        eventually("every order to complete", Duration::from_secs(60), || {
            let done = completed(&store, &ids) == ids.len();
            async move { done }
        })
        .await;
        running.stop().await;

        // Where librdkafka's partitioner put each order's command.
        let command_partition: std::collections::HashMap<Vec<u8>, i32> =
            read_topic(&config, config.commands_topic())
                .await
                .iter()
                .map(|m| (m.key().unwrap().to_vec(), m.partition()))
                .collect();
        let packs = read_topic(&config, config.transitions_topic()).await;
        let pack_header = format!("{}-pack", format.header_value());
        let mut records = Vec::new();
        for pack in &packs {
            assert_eq!(header(pack, HEADER_FORMAT), Some(pack_header.clone()));
            let payload = pack.payload().unwrap();
            let in_pack: Vec<TransitionRecord> = match format {
                WireFormat::Json => serde_json::from_slice(payload).unwrap(),
                _ => order_fsm_proto::decode_transition_pack(payload).unwrap(),
            };
            for r in &in_pack {
                assert_eq!(
                    command_partition[r.order_id.to_string().as_bytes()],
                    pack.partition(),
                    "{format}: an order's records are in its commands' partition"
                );
            }
            records.extend(in_pack);
        }
        let keys: HashSet<(OrderId, u64)> =
            records.iter().map(|r| (r.order_id, r.version)).collect();
        assert_eq!(keys.len(), 150, "{format}: 30 orders × 5 records");
        assert!(
            packs.len() < 150,
            "{format}: {} messages for 150 records",
            packs.len()
        );

        // A follower configured for single JSON records reads the packs by their header.
        let followed = follow_all(&config.clone().with_wire_format(WireFormat::Json), 150).await;
        let followed: HashSet<(OrderId, u64)> =
            followed.iter().map(|r| (r.order_id, r.version)).collect();
        assert_eq!(followed, keys);
    }
}

against_both!(mixed_formats, packed);
