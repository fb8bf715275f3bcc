//! The e-mail notifier against a real SMTP server (aiosmtpd, started by scripts/smtp.sh).

use std::path::{Path, PathBuf};

use order_fsm::testing::{sample_records, service_address};
use order_fsm::{Lifecycle, TransitionSink};
use order_fsm_mail::{EmailNotifier, Language, MailBuilder, MailConfig, MailError};

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

/// The SMTP server's URL and Maildir, or `None` (skipped) when it is not running.
fn server() -> Option<(String, PathBuf)> {
    let (Some(url), Some(maildir)) = (
        service_address("ORDER_FSM_SMTP_URL"),
        service_address("ORDER_FSM_SMTP_MAILDIR"),
    ) else {
        return None;
    };
    Some((url, PathBuf::from(maildir)))
}

fn notifier(url: &str, language: Language) -> EmailNotifier {
    MailBuilder::new(MailConfig::smtp(url, "orders@example.com"))
        .with_language(language)
        .with_lifecycle(Lifecycle::ecommerce())
        .build()
        .unwrap()
}

/// The decoded `Subject:` header of a raw mail (plain ASCII, or RFC 2047 encoded words).
fn subject(mail: &str) -> String {
    let mut lines = mail.lines().skip_while(|l| !l.starts_with("Subject:"));
    let mut raw = lines
        .next()
        .expect("a Subject header")
        .trim_start_matches("Subject:")
        .trim()
        .to_owned();
    // Folded continuation lines.
    for line in lines.take_while(|l| l.starts_with([' ', '\t'])) {
        raw.push(' ');
        raw.push_str(line.trim());
    }
    // Whitespace between two encoded words is not part of the text (RFC 2047, 6.2).
    let mut out = String::new();
    let mut last_encoded = false;
    for (i, part) in raw.split(' ').enumerate() {
        let encoded = part
            .strip_prefix("=?utf-8?b?")
            .or_else(|| part.strip_prefix("=?UTF-8?B?"))
            .and_then(|p| p.strip_suffix("?="));
        if i > 0 && !(last_encoded && encoded.is_some()) {
            out.push(' ');
        }
        match encoded {
            Some(base64) => out.push_str(&String::from_utf8(decode_base64(base64)).unwrap()),
            None => out.push_str(part),
        }
        last_encoded = encoded.is_some();
    }
    out
}

fn decode_base64(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut count = 0;
    let mut out = Vec::new();
    for c in text.bytes().filter(|&c| c != b'=') {
        let value = ALPHABET.iter().position(|&a| a == c).expect("base64") as u32;
        bits = bits << 6 | value;
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
            bits &= (1 << count) - 1;
        }
    }
    out
}

#[tokio::test]
async fn one_mail_per_state_change_reaches_the_smtp_server() {
    let Some((url, maildir)) = server() else {
        return;
    };
    let notifier = notifier(&url, Language::En);
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
async fn spanish_labels_reach_the_server_and_a_redelivered_record_is_not_mailed_twice() {
    let Some((url, maildir)) = server() else {
        return;
    };
    let notifier = notifier(&url, Language::Es);
    let records = sample_records();
    let order = records[0].order_id;
    // The placement and the first transition, then the whole batch again with the first
    // transition redelivered once more (as a follower does after a failed batch).
    notifier.publish(&records[..2]).await.unwrap();
    let mut redelivered = records.clone();
    redelivered.push(records[1].clone());
    notifier.publish(&redelivered).await.unwrap();

    let mails = mails_mentioning(&maildir, &order.to_string());
    assert_eq!(mails.len(), records.len(), "one mail per (order, version)");
    let labels = [
        "Procesando",
        "Preparación",
        "Enviado",
        "Entregado",
        "Finalizado",
    ];
    for (record, label) in records.iter().zip(labels) {
        let id = format!("<{}.{}@order-fsm>", record.order_id, record.version);
        let mail: Vec<&String> = mails.iter().filter(|m| m.contains(&id)).collect();
        assert_eq!(mail.len(), 1, "{id}");
        assert_eq!(subject(mail[0]), format!("Tu pedido {order}: {label}"));
        assert!(mail[0].contains("From: orders@example.com"), "{}", mail[0]);
    }
}

#[tokio::test]
async fn an_unreachable_smtp_server_is_a_retryable_error() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let notifier = notifier(&format!("smtp://127.0.0.1:{port}"), Language::En);
    let err = notifier.publish(&sample_records()).await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert!(
        matches!(
            err,
            order_fsm::Error::Unavailable {
                backend: "smtp",
                ..
            }
        ),
        "{err:?}"
    );
    let mail_error = std::error::Error::source(&err)
        .and_then(|e| e.downcast_ref::<MailError>())
        .expect("the MailError is the source");
    assert!(
        matches!(mail_error, MailError::Unreachable { .. }),
        "{mail_error}"
    );
}
