//! Every dead letter leaves a `warn` line with its reason, origin and order id, never the
//! payload, and a flood of them is rate-limited with a count of what was left out. Before,
//! 1,019 dead-lettered commands left no line in any log.

mod common;

use std::sync::OnceLock;
use std::time::Duration;

use common::{eventually, produce_commands, Broker, Running};
use order_fsm::testing::CapturedLog;
use order_fsm::{Command, CommandSink, DeadLetter, DeadLetterSink, OrderId, Origin, Purchase};
use order_fsm_kafka::{KafkaCommandSink, KafkaDeadLetterSink};

/// The log, installed as the global subscriber on first use (the letters are logged on the
/// source's and the runner's tasks, not on the test's thread).
fn log() -> &'static CapturedLog {
    static LOG: OnceLock<CapturedLog> = OnceLock::new();
    LOG.get_or_init(|| {
        let captured = CapturedLog::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::WARN)
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
        captured
    })
}

/// The captured lines that mention `needle`.
fn lines_with(needle: &str) -> Vec<String> {
    let text = log().text();
    text.lines()
        .filter(|l| l.contains(needle))
        .map(str::to_owned)
        .collect()
}

/// The `suppressed=N` field of a dead-letter line.
fn suppressed(line: &str) -> u64 {
    let (_, rest) = line.split_once("suppressed=").expect("a suppressed field");
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().expect("a count")
}

fn purchase_of(email: &str) -> Purchase {
    let mut purchase = Purchase::example();
    purchase.customer_email = email.into();
    purchase
}

async fn every_dead_letter_is_logged_without_customer_data(broker: Broker) {
    log();
    let config = broker.config("dlq-log", 1).await;
    let running = Running::dead_lettering(&config, None);

    // Undecodable (no event id): dead-lettered by the source.
    let id = uuid::Uuid::new_v4().simple().to_string();
    let (undecodable_email, invalid_email) = (
        format!("undecodable-{id}@example.com"),
        format!("invalid-{id}@example.com"),
    );
    let undecodable = Command::place(purchase_of(&undecodable_email));
    let mut json = serde_json::to_value(&undecodable).expect("json");
    json.as_object_mut().expect("an object").remove("event_id");
    let key = undecodable.order_id().to_string();
    let payload = serde_json::to_vec(&json).expect("json");
    produce_commands(&config, &[(Some(key.as_str()), payload.as_slice())]).await;
    // Decodable but invalid (no units): dead-lettered by the runner.
    let mut purchase = purchase_of(&invalid_email);
    purchase.quantity = Some(0);
    let invalid = Command::place(purchase);
    KafkaCommandSink::new(&config)
        .expect("command sink")
        .submit(std::slice::from_ref(&invalid))
        .await
        .expect("submit");

    let topic = format!("topic={}", config.commands_topic());
    eventually("two dead-letter lines", Duration::from_secs(60), || {
        let n = lines_with(&topic).len();
        async move { n >= 2 }
    })
    .await;
    running.stop().await;

    let lines = lines_with(&topic);
    eprintln!("{}", lines.join("\n"));
    assert_eq!(lines.len(), 2, "one line per dead letter");
    let line_of = |order: OrderId| {
        lines
            .iter()
            .find(|l| l.contains(&format!("order_id={order}")))
            .unwrap_or_else(|| panic!("a line naming order {order}"))
    };
    let first = line_of(undecodable.order_id());
    assert!(first.contains("WARN"), "{first}");
    assert!(first.contains("missing field `event_id`"), "{first}");
    assert!(
        first.contains("partition=0") && first.contains("offset=0"),
        "{first}"
    );
    let second = line_of(invalid.order_id());
    assert!(second.contains("invalid field `quantity`"), "{second}");
    assert!(
        second.contains("partition=0") && second.contains("offset=1"),
        "{second}"
    );
    assert!(lines.iter().all(|l| suppressed(l) == 0));
    let everything = log().text();
    for email in [&undecodable_email, &invalid_email] {
        assert!(!everything.contains(email.as_str()), "{email} logged");
    }
}

async fn dead_letter_lines_are_rate_limited(broker: Broker) {
    log();
    let config = broker.config("dlq-log-flood", 1).await;
    let sink = KafkaDeadLetterSink::new(&config).expect("dlq sink");
    let letter = |offset: i64| {
        DeadLetter::new(
            Command::apply(OrderId::random(), "teleport"),
            "unknown event `teleport`",
            Origin::new(0, offset),
        )
    };
    const FLOOD: i64 = 60;
    let letters: Vec<DeadLetter> = (0..FLOOD).map(letter).collect();
    let sent = futures_util::future::join_all(letters.iter().map(|l| sink.dead_letter(l))).await;
    assert!(sent.iter().all(Result::is_ok), "{sent:?}");
    // A second later the budget is back: the next line counts what was left out.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    sink.dead_letter(&letter(FLOOD)).await.expect("one more");

    let lines = lines_with(&format!("topic={}", config.commands_topic()));
    let accounted: u64 = lines.iter().map(|l| 1 + suppressed(l)).sum();
    assert_eq!(
        accounted,
        FLOOD as u64 + 1,
        "every letter logged or counted: {lines:#?}"
    );
    assert!(lines.len() < 30, "rate-limited: {} lines", lines.len());
    assert!(suppressed(lines.last().expect("lines")) > 0);
}

against_both!(
    every_dead_letter_is_logged_without_customer_data,
    dead_letter_lines_are_rate_limited
);
