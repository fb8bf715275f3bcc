//! E-mail notifications: one mail per state change to the customer, in English or Spanish,
//! over SMTP or into an outbox folder of `.eml` files.

use std::collections::{HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::{AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use order_fsm::{Error, Lifecycle, OrderId, TransitionRecord, TransitionSink};

/// Longest time one mail may take over SMTP.
const SEND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// How many sent mails a notifier remembers to skip in a retried batch.
const REMEMBERED_MAILS: usize = 100_000;

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

/// Language of the mails.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Language {
    /// English.
    En,
    /// Spanish, with the labels of the original systems.
    Es,
}

enum Transport {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    Outbox(AsyncFileTransport<Tokio1Executor>),
}

/// A [`TransitionSink`] that mails the customer about every state change.
///
/// Meant to be driven by a follower of the transitions topic ([`crate::followers`]), out of
/// the workers' acknowledgement path. Delivery is at least once. A record seen again is not
/// mailed twice while this notifier remembers it (the last 100,000 it sent): a batch retried
/// after one of its mails failed, or a record the runner published twice. After a crash the
/// follower redelivers at most its uncommitted batch, which is mailed again; each mail's
/// `Message-ID` is `<order-id.version@order-fsm>`, so a mail client can spot a repeat. Each mail
/// has 30 s to go through.
pub struct EmailNotifier {
    transport: Transport,
    from: Mailbox,
    language: Language,
    lifecycle: Arc<Lifecycle>,
    sent: Mutex<RecentlySent>,
}

impl EmailNotifier {
    /// Sends through the plain SMTP server at `url` (`smtp://host:port`), authenticating with
    /// `ORDER_FSM_SMTP_USERNAME` / `ORDER_FSM_SMTP_PASSWORD` when they are set. TLS relays are
    /// not compiled into these examples.
    ///
    /// # Errors
    /// [`Error::Config`] for a bad URL or sender address.
    pub fn smtp(
        url: &str,
        from: &str,
        language: Language,
        lifecycle: Arc<Lifecycle>,
    ) -> Result<Self, Error> {
        let bad = || Error::Config(format!("smtp url `{url}`: expected smtp://host:port").into());
        let authority = url
            .strip_prefix("smtp://")
            .ok_or_else(bad)?
            .trim_end_matches('/');
        let (host, port) = authority.rsplit_once(':').ok_or_else(bad)?;
        let port: u16 = port.parse().map_err(|_| bad())?;
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host).port(port);
        if let (Ok(user), Ok(password)) = (
            std::env::var("ORDER_FSM_SMTP_USERNAME"),
            std::env::var("ORDER_FSM_SMTP_PASSWORD"),
        ) {
            builder = builder.credentials(
                lettre::transport::smtp::authentication::Credentials::new(user, password),
            );
        }
        Self::new(Transport::Smtp(builder.build()), from, language, lifecycle)
    }

    /// Writes each mail as an `.eml` file into `dir` (created if missing).
    ///
    /// # Errors
    /// [`Error::Config`] for a bad sender address or an unusable folder.
    pub fn outbox(
        dir: impl Into<PathBuf>,
        from: &str,
        language: Language,
        lifecycle: Arc<Lifecycle>,
    ) -> Result<Self, Error> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::Config(format!("outbox {}: {e}", dir.display()).into()))?;
        Self::new(
            Transport::Outbox(AsyncFileTransport::new(dir)),
            from,
            language,
            lifecycle,
        )
    }

    fn new(
        transport: Transport,
        from: &str,
        language: Language,
        lifecycle: Arc<Lifecycle>,
    ) -> Result<Self, Error> {
        let from = from
            .parse()
            .map_err(|e| Error::Config(format!("sender address `{from}`: {e}").into()))?;
        Ok(Self {
            transport,
            from,
            language,
            lifecycle,
            sent: Mutex::default(),
        })
    }

    /// The mail for one record.
    ///
    /// # Errors
    /// [`Error::InvalidField`] if the customer address cannot be used.
    pub fn compose(&self, record: &TransitionRecord) -> Result<Message, Error> {
        let to: Mailbox = record
            .purchase
            .customer_email
            .parse()
            .map_err(|_| Error::invalid_field("customer_email", "is not a usable mailbox"))?;
        let state = self
            .lifecycle
            .state(&record.to)
            .map(|s| self.lifecycle.info(s));
        let language = match self.language {
            Language::En => "en",
            Language::Es => "es",
        };
        let label = state.map_or(record.to.as_ref(), |info| info.label_or_name(language));
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
        Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .message_id(Some(format!(
                "<{}.{}@order-fsm>",
                record.order_id, record.version
            )))
            .header(ContentType::TEXT_PLAIN)
            .body(body)
            .map_err(|e| Error::invalid_field("customer_email", e.to_string()))
    }

    async fn send(&self, message: Message) -> Result<(), Error> {
        match &self.transport {
            // lettre bounds only the connect with its timeout; a server that stops answering
            // mid-conversation (paused, overloaded) would hold the send, and its follower,
            // for good (lettre issue 1027). Bounded here; the follower retries.
            Transport::Smtp(smtp) => {
                match tokio::time::timeout(SEND_TIMEOUT, smtp.send(message)).await {
                    Ok(sent) => sent.map(drop).map_err(|e| {
                        if e.is_permanent() {
                            Error::backend("smtp", e)
                        } else {
                            Error::unavailable("smtp", e)
                        }
                    }),
                    Err(_) => Err(Error::unavailable(
                        "smtp",
                        format!("no answer within {} s", SEND_TIMEOUT.as_secs()),
                    )),
                }
            }
            Transport::Outbox(files) => files
                .send(message)
                .await
                .map(drop)
                .map_err(|e| Error::unavailable("outbox", e)),
        }
    }
}

#[async_trait]
impl TransitionSink for EmailNotifier {
    async fn publish(&self, records: &[TransitionRecord]) -> Result<(), Error> {
        const CONCURRENT_MAILS: usize = 64;
        let unsent: Vec<&TransitionRecord> = {
            let sent = self.sent.lock().unwrap_or_else(|p| p.into_inner());
            records
                .iter()
                .filter(|r| !sent.contains(&(r.order_id, r.version)))
                .collect()
        };
        for chunk in unsent.chunks(CONCURRENT_MAILS) {
            let sends = chunk.iter().map(|record| async move {
                let sent: Result<(), Error> = match self.compose(record) {
                    Ok(message) => {
                        self.send(message).await?;
                        self.sent
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .insert((record.order_id, record.version));
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
                result?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let lifecycle = Arc::new(Lifecycle::ecommerce());
        let notifier =
            EmailNotifier::outbox(dir.path(), "orders@shop.example", Language::Es, lifecycle)
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
            let subject = mail
                .headers()
                .get::<lettre::message::header::Subject>()
                .unwrap();
            assert_eq!(
                subject.as_ref(),
                format!("Tu pedido {}: {label}", record.order_id)
            );
            assert_eq!(mail.envelope().to()[0].to_string(), "customer@example.com");
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
}
