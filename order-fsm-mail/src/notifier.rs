//! E-mail notifications: one mail per state change to the customer, in English or Spanish,
//! over SMTP or into an outbox folder of `.eml` files.

use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::{AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use order_fsm::{Error, Lifecycle, OrderId, TransitionRecord, TransitionSink};

use crate::{Language, MailError};

/// How many sent mails a notifier remembers to skip in a retried batch.
const REMEMBERED_MAILS: usize = 100_000;

/// Mails of one publish sent at once.
const CONCURRENT_MAILS: usize = 64;

/// The `(order, version)` of the mails sent last, oldest forgotten first.
#[derive(Default)]
struct RecentlySent {
    keys: HashSet<(OrderId, u64)>,
    order: VecDeque<(OrderId, u64)>,
}

impl RecentlySent {
    fn contains(&self, key: &(OrderId, u64)) -> bool {
        self.keys.contains(key)
    }

    fn insert(&mut self, key: (OrderId, u64)) {
        if self.keys.insert(key) {
            self.order.push_back(key);
            if self.order.len() > REMEMBERED_MAILS {
                if let Some(oldest) = self.order.pop_front() {
                    self.keys.remove(&oldest);
                }
            }
        }
    }
}

pub(crate) enum Transport {
    Smtp {
        client: AsyncSmtpTransport<Tokio1Executor>,
        url: String,
    },
    Outbox {
        client: AsyncFileTransport<Tokio1Executor>,
        dir: String,
    },
}

/// One mail as [`EmailNotifier::compose`] writes it: plain text, one recipient.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Mail {
    /// The sender.
    pub from: String,
    /// The customer's address.
    pub to: String,
    /// The subject: the order and its new state.
    pub subject: String,
    /// The plain-text body.
    pub body: String,
    /// `<order-id.version@order-fsm>`: the same for a repeat of the same state change.
    pub message_id: String,
}

/// A [`TransitionSink`] that mails the customer about every state change.
///
/// Built by [`MailBuilder`](crate::MailBuilder). Meant to be driven by a follower of the
/// transitions topic, out of the workers' acknowledgement path (a slow mail server then
/// delays only the mail). Delivery is at least once:
/// - a record seen again is not mailed twice while this notifier remembers it (the last
///   100,000 it sent): a batch retried after one of its mails failed, or a record the runner
///   published twice;
/// - after a crash the follower redelivers at most its uncommitted batch, which is mailed
///   again; each mail's `Message-ID` is `<order-id.version@order-fsm>`, so a mail client can
///   spot a repeat.
///
/// Each mail has [`MailConfig::send_timeout`](crate::MailConfig::send_timeout) (30 s by
/// default) to go through SMTP; up to 64 mails of a batch are sent at once. A record whose
/// customer address cannot be mailed is skipped with a warning (it is no reason to hold the
/// order up). A failed send fails the publish with the classified [`MailError`], converted
/// into [`order_fsm::Error`]: retryable ones become [`Error::Unavailable`].
pub struct EmailNotifier {
    transport: Transport,
    from: Mailbox,
    language: Language,
    lifecycle: Arc<Lifecycle>,
    send_timeout: Duration,
    sent: Mutex<RecentlySent>,
}

impl fmt::Debug for EmailNotifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let transport = match &self.transport {
            Transport::Smtp { url, .. } => url.as_str(),
            Transport::Outbox { dir, .. } => dir.as_str(),
        };
        f.debug_struct("EmailNotifier")
            .field("transport", &transport)
            .field("from", &self.from.to_string())
            .field("language", &self.language)
            .field("lifecycle", &self.lifecycle.name())
            .finish_non_exhaustive()
    }
}

impl EmailNotifier {
    pub(crate) fn new(
        transport: Transport,
        from: Mailbox,
        language: Language,
        lifecycle: Arc<Lifecycle>,
        send_timeout: Duration,
    ) -> Self {
        Self {
            transport,
            from,
            language,
            lifecycle,
            send_timeout,
            sent: Mutex::default(),
        }
    }

    /// The language of the mails.
    pub fn language(&self) -> Language {
        self.language
    }

    /// The mail for one record, in the notifier's language. The state is named by its
    /// label in that language ([`order_fsm::StateInfo::label_or_name`]).
    ///
    /// # Errors
    /// [`MailError::InvalidRecipient`] if the customer address cannot be used.
    pub fn compose(&self, record: &TransitionRecord) -> Result<Mail, MailError> {
        let to = recipient(record)?;
        let label = self
            .lifecycle
            .state(&record.to)
            .map_or(record.to.as_ref(), |state| {
                self.lifecycle
                    .info(state)
                    .label_or_name(self.language.code())
            });
        let (subject, body) = match self.language {
            Language::En => (
                format!("Your order {}: {label}", record.order_id),
                format!(
                    "Hello,\n\nyour order {} ({}) is now: {label}.\n{}\nThank you for your purchase.\n",
                    record.order_id,
                    record.purchase.product,
                    record.reason.as_ref().map(|r| format!("Reason: {r}\n")).unwrap_or_default(),
                ),
            ),
            Language::Es => (
                format!("Tu pedido {}: {label}", record.order_id),
                format!(
                    "Hola,\n\ntu pedido {} ({}) está ahora: {label}.\n{}\nGracias por tu compra.\n",
                    record.order_id,
                    record.purchase.product,
                    record.reason.as_ref().map(|r| format!("Motivo: {r}\n")).unwrap_or_default(),
                ),
            ),
        };
        Ok(Mail {
            from: self.from.to_string(),
            to: to.to_string(),
            subject,
            body,
            message_id: format!("<{}.{}@order-fsm>", record.order_id, record.version),
        })
    }

    fn message(&self, record: &TransitionRecord) -> Result<Message, MailError> {
        let mail = self.compose(record)?;
        Message::builder()
            .from(self.from.clone())
            .to(recipient(record)?)
            .subject(mail.subject)
            .message_id(Some(mail.message_id))
            .header(ContentType::TEXT_PLAIN)
            .body(mail.body)
            .map_err(|e| MailError::InvalidRecipient {
                order_id: record.order_id,
                reason: e.to_string(),
            })
    }

    async fn send(&self, message: Message) -> Result<(), MailError> {
        match &self.transport {
            // lettre bounds only the connect with its timeout; a server that stops answering
            // mid-conversation (paused, overloaded) would hold the send, and its follower,
            // for good (lettre issue 1027). Bounded here; the follower retries.
            Transport::Smtp { client, url } => {
                match tokio::time::timeout(self.send_timeout, client.send(message)).await {
                    Ok(sent) => sent.map(drop).map_err(|e| MailError::smtp(url, e)),
                    Err(_) => Err(MailError::Timeout {
                        url: url.clone(),
                        after: self.send_timeout,
                    }),
                }
            }
            Transport::Outbox { client, dir } => {
                client
                    .send(message)
                    .await
                    .map(drop)
                    .map_err(|e| MailError::Outbox {
                        dir: dir.clone(),
                        source: Arc::new(e),
                    })
            }
        }
    }

    fn remember(&self, record: &TransitionRecord) {
        self.sent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((record.order_id, record.version));
    }
}

fn recipient(record: &TransitionRecord) -> Result<Mailbox, MailError> {
    record
        .purchase
        .customer_email
        .parse()
        .map_err(|_| MailError::InvalidRecipient {
            order_id: record.order_id,
            reason: "is not a usable mailbox".into(),
        })
}

#[async_trait]
impl TransitionSink for EmailNotifier {
    async fn publish(&self, records: &[TransitionRecord]) -> Result<(), Error> {
        let unsent: Vec<&TransitionRecord> = {
            let sent = self.sent.lock().unwrap_or_else(|p| p.into_inner());
            records
                .iter()
                .filter(|r| !sent.contains(&(r.order_id, r.version)))
                .collect()
        };
        for chunk in unsent.chunks(CONCURRENT_MAILS) {
            let sends = chunk.iter().map(|record| async move {
                let sent: Result<(), MailError> = match self.message(record) {
                    Ok(message) => {
                        self.send(message).await?;
                        self.remember(record);
                        Ok(())
                    }
                    // A customer address we cannot mail is no reason to hold the order up.
                    Err(e) => {
                        tracing::warn!(order_id = %record.order_id, error = %e, "notification skipped");
                        Ok(())
                    }
                };
                sent
            });
            for result in futures_util::future::join_all(sends).await {
                result.map_err(Error::from)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MailBuilder, MailConfig};

    #[test]
    fn the_memory_of_sent_mails_forgets_the_oldest_first() {
        let mut sent = RecentlySent::default();
        let key = |n: u64| (OrderId::from_u128(1), n);
        for n in 0..=REMEMBERED_MAILS as u64 {
            sent.insert(key(n));
        }
        sent.insert(key(5)); // a repeat changes nothing
        assert!(!sent.contains(&key(0)), "the oldest is forgotten");
        assert!(sent.contains(&key(1)) && sent.contains(&key(REMEMBERED_MAILS as u64)));
        assert_eq!(sent.keys.len(), REMEMBERED_MAILS);
        assert_eq!(sent.order.len(), REMEMBERED_MAILS);
    }

    #[tokio::test]
    async fn writes_one_eml_per_record_in_the_chosen_language() {
        let dir = tempfile::tempdir().unwrap();
        let notifier = MailBuilder::new(MailConfig::outbox(dir.path(), "orders@example.com"))
            .with_language(Language::Es)
            .with_lifecycle(Lifecycle::ecommerce())
            .build()
            .unwrap();
        let records = order_fsm::testing::sample_records();
        let labels = [
            "Procesando",
            "Preparación",
            "Enviado",
            "Entregado",
            "Finalizado",
        ];
        for (record, label) in records.iter().zip(labels) {
            let mail = notifier.compose(record).unwrap();
            assert_eq!(
                mail.subject,
                format!("Tu pedido {}: {label}", record.order_id)
            );
            assert_eq!(mail.to, "customer@example.com");
            let message = notifier.message(record).unwrap();
            assert_eq!(
                message.envelope().to()[0].to_string(),
                "customer@example.com"
            );
        }
        notifier.publish(&records).await.unwrap();
        let files: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(files.len(), records.len(), "one .eml per state change");
        // The same batch again (as after another sink failed): nothing is mailed twice.
        notifier.publish(&records).await.unwrap();
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            records.len(),
            "a republished batch sends no repeats"
        );
        assert!(files
            .iter()
            .all(|f| f.extension().is_some_and(|e| e == "eml")));
        let all: String = files
            .iter()
            .map(|f| std::fs::read_to_string(f).unwrap())
            .collect();
        for record in &records {
            assert!(all.contains(&format!(
                "<{}.{}@order-fsm>",
                record.order_id, record.version
            )));
        }
    }

    #[test]
    fn a_state_without_a_label_in_the_language_is_named_by_its_machine_name() {
        let lifecycle = Lifecycle::builder("delivery")
            .state("received", &[("es", "Recibido")])
            .terminal("done", &[("en", "Done")])
            .initial("received")
            .advance("received", "hand_over", "done")
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let notifier = MailBuilder::new(MailConfig::outbox(dir.path(), "orders@example.com"))
            .with_lifecycle(lifecycle)
            .build()
            .unwrap();
        let mut record = order_fsm::testing::sample_records().remove(0);
        record.to = "received".into();
        let mail = notifier.compose(&record).unwrap();
        assert!(mail.subject.ends_with(": received"), "{}", mail.subject);
        record.to = "done".into();
        record.reason = Some("handed to a neighbour".into());
        let mail = notifier.compose(&record).unwrap();
        assert!(mail.subject.ends_with(": Done"), "{}", mail.subject);
        assert!(
            mail.body.contains("Reason: handed to a neighbour\n"),
            "{}",
            mail.body
        );
    }
}
