//! The outbox-folder transport through the public API: `.eml` files in a temporary folder.

use std::path::Path;
use std::sync::Arc;

use order_fsm::testing::sample_records;
use order_fsm::{Lifecycle, Purchase, TransitionSink};
use order_fsm_mail::{Language, MailBuilder, MailConfig};

fn mails(dir: &Path) -> Vec<String> {
    let mut mails: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .inspect(|path| assert_eq!(path.extension().unwrap(), "eml"))
        .map(|path| std::fs::read_to_string(path).unwrap())
        .collect();
    mails.sort();
    mails
}

#[tokio::test]
async fn english_mails_name_the_state_and_the_reason_and_skip_unusable_addresses() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = dir.path().join("outbox"); // created by build
    let notifier = MailBuilder::new(MailConfig::outbox(&outbox, "Shop <orders@example.com>"))
        .with_language(Language::En)
        .with_lifecycle(Arc::new(Lifecycle::ecommerce()))
        .build()
        .unwrap();
    let mut records = sample_records();
    let last = records.len() - 1;
    records[last].reason = Some("requested by the customer".into());
    // Another order whose customer address cannot be mailed: skipped, not an error.
    let mut unusable = sample_records().remove(0);
    unusable.order_id = order_fsm::OrderId::from_u128(42);
    let mut purchase: Purchase = (*unusable.purchase).clone();
    purchase.customer_email = "not an address".into();
    unusable.purchase = Arc::new(purchase);
    records.push(unusable);

    notifier.publish(&records).await.unwrap();
    let written = mails(&outbox);
    assert_eq!(
        written.len(),
        records.len() - 1,
        "all but the unusable address"
    );
    let order = records[0].order_id;
    let labels = [
        "Processing",
        "Preparing",
        "Shipped",
        "Delivered",
        "Completed",
    ];
    for (record, label) in records.iter().zip(labels) {
        let id = format!("<{}.{}@order-fsm>", record.order_id, record.version);
        let mail: Vec<&String> = written.iter().filter(|m| m.contains(&id)).collect();
        assert_eq!(mail.len(), 1, "{id}");
        assert!(
            mail[0].contains(&format!("Subject: Your order {order}: {label}\r\n")),
            "{}",
            mail[0]
        );
        assert!(
            mail[0].contains("From: Shop <orders@example.com>"),
            "{}",
            mail[0]
        );
        assert!(mail[0].contains("To: customer@example.com"), "{}", mail[0]);
    }
    assert!(written
        .iter()
        .any(|m| m.contains("Reason: requested by the customer")));

    // Redelivered, in part and whole: nothing new is written.
    notifier.publish(&records[1..3]).await.unwrap();
    notifier.publish(&records).await.unwrap();
    assert_eq!(mails(&outbox), written, "no mail twice");
}
