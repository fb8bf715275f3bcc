//! The e-mail notifier against a real SMTP server (aiosmtpd, started by scripts/smtp.sh).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use order_fsm::testing::{sample_records, service_address};
use order_fsm::{Lifecycle, TransitionSink};
use order_fsm_examples::notify::{EmailNotifier, Language};

fn mails_mentioning(maildir: &Path, needle: &str) -> Vec<String> {
    std::fs::read_dir(maildir.join("new"))
        .map(|entries| {
            entries
                .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
                .filter(|mail| mail.contains(needle))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn one_mail_per_state_change_reaches_the_smtp_server() {
    let (Some(url), Some(maildir)) = (
        service_address("ORDER_FSM_SMTP_URL"),
        service_address("ORDER_FSM_SMTP_MAILDIR"),
    ) else {
        return;
    };
    let maildir = PathBuf::from(maildir);
    let notifier = EmailNotifier::smtp(
        &url,
        "orders@shop.example",
        Language::En,
        Arc::new(Lifecycle::ecommerce()),
    )
    .unwrap();
    let records = sample_records();
    notifier.publish(&records).await.unwrap();

    let order = records[0].order_id.to_string();
    let mails = mails_mentioning(&maildir, &order);
    assert_eq!(mails.len(), records.len(), "exactly one mail per record");
    for record in &records {
        let id = format!("<{}.{}@order-fsm>", record.order_id, record.version);
        assert_eq!(mails.iter().filter(|m| m.contains(&id)).count(), 1, "{id}");
    }
    assert!(mails.iter().all(|m| m.contains("To: customer@example.com")));
}

#[tokio::test]
async fn an_unreachable_smtp_server_is_a_retryable_error() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let notifier = EmailNotifier::smtp(
        &format!("smtp://127.0.0.1:{port}"),
        "orders@shop.example",
        Language::En,
        Arc::new(Lifecycle::ecommerce()),
    )
    .unwrap();
    let err = notifier.publish(&sample_records()).await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
}
