//! Assembles an [`EmailNotifier`] from its settings and a lifecycle.

use std::sync::Arc;

use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncFileTransport, AsyncSmtpTransport, Tokio1Executor};
use order_fsm::Lifecycle;

use crate::config::smtp_authority;
use crate::notifier::Transport;
use crate::{EmailNotifier, Language, MailConfig, MailError, MailTransport};

/// Builds an [`EmailNotifier`]: [`MailBuilder::new`] or [`MailBuilder::from_env`], `with_*`
/// setters, then [`MailBuilder::build`].
///
/// The lifecycle gives the state labels of the mails; it defaults to
/// [`Lifecycle::ecommerce`].
///
/// ```
/// # fn main() -> Result<(), order_fsm_mail::MailError> {
/// use order_fsm::Lifecycle;
/// use order_fsm_mail::{Language, MailBuilder, MailConfig};
///
/// let outbox = std::env::temp_dir().join("order-fsm-mail-builder-doc");
/// let notifier = MailBuilder::new(MailConfig::outbox(&outbox, "Shop <orders@example.com>"))
///     .with_language(Language::Es)
///     .with_lifecycle(Lifecycle::ecommerce())
///     .build()?;
/// # drop(notifier);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct MailBuilder {
    config: MailConfig,
    lifecycle: Arc<Lifecycle>,
}

impl MailBuilder {
    /// A builder for a notifier with these settings.
    pub fn new(config: MailConfig) -> Self {
        Self {
            config,
            lifecycle: Arc::new(Lifecycle::ecommerce()),
        }
    }

    /// A builder with the settings of [`MailConfig::from_env`].
    ///
    /// # Errors
    /// [`MailError::Config`] when a required variable is missing or one is malformed.
    pub fn from_env() -> Result<Self, MailError> {
        MailConfig::from_env().map(Self::new)
    }

    /// The lifecycle whose state labels the mails name (default: the ecommerce lifecycle).
    pub fn with_lifecycle(mut self, lifecycle: impl Into<Arc<Lifecycle>>) -> Self {
        self.lifecycle = lifecycle.into();
        self
    }

    /// The language of the mails.
    pub fn with_language(mut self, language: Language) -> Self {
        self.config.language = language;
        self
    }

    /// The sender.
    pub fn with_from(mut self, from: impl Into<String>) -> Self {
        self.config.from = from.into();
        self
    }

    /// The settings so far.
    pub fn config(&self) -> &MailConfig {
        &self.config
    }

    /// Checks the settings and builds the notifier. Nothing is sent and no server is
    /// contacted: an SMTP server that is down shows as retryable errors of the first
    /// publish. An outbox folder is created if missing.
    ///
    /// # Errors
    /// [`MailError::Config`] for a bad SMTP URL or sender address, or an outbox folder that
    /// cannot be created.
    pub fn build(self) -> Result<EmailNotifier, MailError> {
        let MailConfig {
            transport,
            from,
            language,
            credentials,
            send_timeout,
        } = self.config;
        let from = from
            .parse()
            .map_err(|e| MailError::config(format!("sender address `{from}`: {e}")))?;
        if send_timeout.is_zero() {
            return Err(MailError::config("send timeout: must be more than zero"));
        }
        let transport = match transport {
            MailTransport::Smtp(url) => {
                let (host, port) = smtp_authority(&url)?;
                let mut smtp =
                    AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host).port(port);
                if let Some(credentials) = credentials {
                    smtp = smtp.credentials(Credentials::new(
                        credentials.username.clone(),
                        credentials.password().to_owned(),
                    ));
                }
                Transport::Smtp {
                    client: smtp.build(),
                    url,
                }
            }
            MailTransport::Outbox(dir) => {
                std::fs::create_dir_all(&dir).map_err(|e| {
                    MailError::config(format!("outbox folder {}: {e}", dir.display()))
                })?;
                Transport::Outbox {
                    client: AsyncFileTransport::new(&dir),
                    dir: dir.display().to_string(),
                }
            }
        };
        Ok(EmailNotifier::new(
            transport,
            from,
            language,
            self.lifecycle,
            send_timeout,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_settings_are_config_errors() {
        let dir = tempfile::tempdir().unwrap();
        let not_a_folder = dir.path().join("file");
        std::fs::write(&not_a_folder, "").unwrap();
        for config in [
            MailConfig::smtp("smtp://127.0.0.1:2525", "not an address"),
            MailConfig::smtp("127.0.0.1:2525", "orders@example.com"),
            MailConfig::outbox(not_a_folder.join("outbox"), "orders@example.com"),
            MailConfig::outbox(dir.path(), "orders@example.com")
                .with_send_timeout(std::time::Duration::ZERO),
        ] {
            let err = MailBuilder::new(config.clone()).build().err().unwrap();
            assert!(matches!(err, MailError::Config(_)), "{config:?}: {err}");
        }
    }

    #[test]
    fn the_outbox_folder_is_created_at_build() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = dir.path().join("a").join("outbox");
        MailBuilder::new(MailConfig::outbox(&outbox, "orders@example.com"))
            .build()
            .unwrap();
        assert!(outbox.is_dir());
    }
}
