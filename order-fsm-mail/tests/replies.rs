//! How the notifier classifies what an SMTP server answers, against a scripted peer on
//! loopback (aiosmtpd accepts every mail, so it cannot say "not now" or "never").

use std::time::Duration;

use order_fsm::testing::sample_records;
use order_fsm::TransitionSink;
use order_fsm_mail::{MailBuilder, MailConfig, MailError};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// A peer that greets, accepts the sender and answers `rcpt_reply` to each recipient
/// (`None`: it stops answering after the greeting). Returns its URL.
async fn scripted_server(rcpt_reply: Option<&'static str>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("smtp://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let (read, mut write) = socket.into_split();
                let mut lines = BufReader::new(read).lines();
                write.write_all(b"220 scripted ESMTP\r\n").await.unwrap();
                let Some(rcpt_reply) = rcpt_reply else {
                    // Holds the connection open and says nothing more.
                    while let Ok(Some(_)) = lines.next_line().await {}
                    return;
                };
                while let Ok(Some(line)) = lines.next_line().await {
                    let command = line.to_ascii_uppercase();
                    let reply = if command.starts_with("EHLO") || command.starts_with("HELO") {
                        "250 scripted"
                    } else if command.starts_with("MAIL") || command.starts_with("RSET") {
                        "250 ok"
                    } else if command.starts_with("RCPT") {
                        rcpt_reply
                    } else if command.starts_with("QUIT") {
                        "221 bye"
                    } else {
                        "502 not implemented"
                    };
                    let reply = format!("{reply}\r\n");
                    if write.write_all(reply.as_bytes()).await.is_err() || command == "QUIT" {
                        return;
                    }
                }
            });
        }
    });
    url
}

async fn publish_to(url: &str, timeout: Duration) -> order_fsm::Error {
    let notifier =
        MailBuilder::new(MailConfig::smtp(url, "orders@example.com").with_send_timeout(timeout))
            .build()
            .unwrap();
    notifier.publish(&sample_records()).await.unwrap_err()
}

fn mail_error(err: &order_fsm::Error) -> &MailError {
    std::error::Error::source(err)
        .and_then(|e| e.downcast_ref::<MailError>())
        .unwrap_or_else(|| panic!("no MailError behind {err:?}"))
}

#[tokio::test]
async fn a_4xx_reply_is_retryable() {
    let url = scripted_server(Some("451 4.7.1 greylisted, try again later")).await;
    let err = publish_to(&url, Duration::from_secs(30)).await;
    assert!(err.is_retryable(), "{err}");
    assert!(
        matches!(mail_error(&err), MailError::Unavailable { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("greylisted"), "{err}");
}

#[tokio::test]
async fn a_5xx_reply_is_fatal() {
    let url = scripted_server(Some("550 5.1.1 no such mailbox")).await;
    let err = publish_to(&url, Duration::from_secs(30)).await;
    assert!(!err.is_retryable(), "{err}");
    assert!(
        matches!(
            err,
            order_fsm::Error::Backend {
                backend: "smtp",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        matches!(mail_error(&err), MailError::Rejected { .. }),
        "{err}"
    );
}

#[tokio::test]
async fn a_server_that_stops_answering_times_out_retryably() {
    let url = scripted_server(None).await;
    let started = std::time::Instant::now();
    let err = publish_to(&url, Duration::from_millis(300)).await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "bounded by the send timeout"
    );
    assert!(err.is_retryable(), "{err}");
    assert!(
        matches!(mail_error(&err), MailError::Timeout { .. }),
        "{err}"
    );
}
