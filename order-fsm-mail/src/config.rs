//! The notifier's settings: where mail goes, who sends it, in which language.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use crate::MailError;

/// Longest time one mail may take over SMTP by default.
pub(crate) const DEFAULT_SEND_TIMEOUT: Duration = Duration::from_secs(30);

/// Language of the mails: the template and the state labels (`Lifecycle` labels of that
/// language, the state's machine name where a state has none).
///
/// Parses from and prints as its code, `en` or `es`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Language {
    /// English.
    #[default]
    En,
    /// Spanish, with the labels of the original systems.
    Es,
}

impl Language {
    /// Every language, in declaration order.
    pub const ALL: [Language; 2] = [Language::En, Language::Es];

    /// The language's code, as the lifecycle's labels use it (`en`, `es`).
    pub fn code(self) -> &'static str {
        match self {
            Language::En => "en",
            Language::Es => "es",
        }
    }
}

impl fmt::Display for Language {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl FromStr for Language {
    type Err = MailError;

    /// `en` or `es`, in any case.
    fn from_str(s: &str) -> Result<Self, MailError> {
        Language::ALL
            .into_iter()
            .find(|l| l.code().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| MailError::config(format!("language `{s}`: expected `en` or `es`")))
    }
}

/// Where the mails go.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum MailTransport {
    /// A plain SMTP server, `smtp://host:port` (no TLS is compiled in: a local relay or a
    /// server on a private network).
    Smtp(String),
    /// A folder where each mail is written as an `.eml` file (created if missing).
    Outbox(PathBuf),
}

/// User name and password for the SMTP server. Its `Debug` output hides the password.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SmtpCredentials {
    /// The user name.
    pub username: String,
    password: String,
}

impl SmtpCredentials {
    /// Credentials for the SMTP server.
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        Self {
            username: username.into(),
            password: password.into(),
        }
    }

    pub(crate) fn password(&self) -> &str {
        &self.password
    }
}

impl fmt::Debug for SmtpCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpCredentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// The settings of an [`EmailNotifier`](crate::EmailNotifier): plain data, checked by
/// [`MailBuilder::build`](crate::MailBuilder::build).
///
/// ```
/// use order_fsm_mail::{Language, MailConfig};
///
/// let config = MailConfig::smtp("smtp://127.0.0.1:2525", "orders@example.com")
///     .with_language(Language::Es)
///     .with_send_timeout(std::time::Duration::from_secs(10));
/// assert_eq!(config.language, Language::Es);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct MailConfig {
    /// Where the mails go.
    pub transport: MailTransport,
    /// The sender, `orders@example.com` or `Shop <orders@example.com>`.
    pub from: String,
    /// Language of the mails (default English).
    pub language: Language,
    /// Credentials for the SMTP server, if it asks for them.
    pub credentials: Option<SmtpCredentials>,
    /// Longest time one mail may take over SMTP (default 30 s).
    pub send_timeout: Duration,
}

impl MailConfig {
    /// Settings for mails sent through `transport` by `from`, in English.
    pub fn new(transport: MailTransport, from: impl Into<String>) -> Self {
        Self {
            transport,
            from: from.into(),
            language: Language::default(),
            credentials: None,
            send_timeout: DEFAULT_SEND_TIMEOUT,
        }
    }

    /// Settings for mails sent through the SMTP server at `url` (`smtp://host:port`).
    pub fn smtp(url: impl Into<String>, from: impl Into<String>) -> Self {
        Self::new(MailTransport::Smtp(url.into()), from)
    }

    /// Settings for mails written as `.eml` files into the folder `dir`.
    pub fn outbox(dir: impl Into<PathBuf>, from: impl Into<String>) -> Self {
        Self::new(MailTransport::Outbox(dir.into()), from)
    }

    /// Settings from the environment:
    ///
    /// | variable | meaning |
    /// |---|---|
    /// | `ORDER_FSM_SMTP_URL` | the SMTP server, `smtp://host:port` |
    /// | `ORDER_FSM_MAIL_OUTBOX` | or a folder for `.eml` files (exactly one of the two) |
    /// | `ORDER_FSM_MAIL_FROM` | the sender (required) |
    /// | `ORDER_FSM_MAIL_LANGUAGE` | `en` (default) or `es` |
    /// | `ORDER_FSM_SMTP_USERNAME`, `ORDER_FSM_SMTP_PASSWORD` | credentials (both or neither) |
    ///
    /// # Errors
    /// [`MailError::Config`] when a required variable is missing or one is malformed.
    pub fn from_env() -> Result<Self, MailError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    fn from_lookup(var: impl Fn(&str) -> Option<String>) -> Result<Self, MailError> {
        let var = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        let transport =
            match (var("ORDER_FSM_SMTP_URL"), var("ORDER_FSM_MAIL_OUTBOX")) {
                (Some(url), None) => MailTransport::Smtp(url),
                (None, Some(dir)) => MailTransport::Outbox(dir.into()),
                (Some(_), Some(_)) => {
                    return Err(MailError::config(
                        "both ORDER_FSM_SMTP_URL and ORDER_FSM_MAIL_OUTBOX are set; set one",
                    ))
                }
                (None, None) => return Err(MailError::config(
                    "set ORDER_FSM_SMTP_URL (smtp://host:port) or ORDER_FSM_MAIL_OUTBOX (a folder)",
                )),
            };
        let from = var("ORDER_FSM_MAIL_FROM")
            .ok_or_else(|| MailError::config("ORDER_FSM_MAIL_FROM (the sender) is not set"))?;
        let mut config = Self::new(transport, from);
        if let Some(language) = var("ORDER_FSM_MAIL_LANGUAGE") {
            config.language = language.parse()?;
        }
        config.credentials = credentials(&var)?;
        Ok(config)
    }

    /// The SMTP credentials from `ORDER_FSM_SMTP_USERNAME` and `ORDER_FSM_SMTP_PASSWORD`,
    /// when they are set (for a URL given by a flag, with the secret kept out of `ps`).
    ///
    /// # Errors
    /// [`MailError::Config`] when only one of the two is set.
    pub fn with_env_credentials(mut self) -> Result<Self, MailError> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        if let Some(credentials) = credentials(&var)? {
            self.credentials = Some(credentials);
        }
        Ok(self)
    }

    /// The sender.
    pub fn with_from(mut self, from: impl Into<String>) -> Self {
        self.from = from.into();
        self
    }

    /// The language of the mails.
    pub fn with_language(mut self, language: Language) -> Self {
        self.language = language;
        self
    }

    /// Credentials for the SMTP server.
    pub fn with_credentials(
        mut self,
        username: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        self.credentials = Some(SmtpCredentials::new(username, password));
        self
    }

    /// The longest time one mail may take over SMTP.
    pub fn with_send_timeout(mut self, timeout: Duration) -> Self {
        self.send_timeout = timeout;
        self
    }
}

fn credentials(
    var: &impl Fn(&str) -> Option<String>,
) -> Result<Option<SmtpCredentials>, MailError> {
    match (
        var("ORDER_FSM_SMTP_USERNAME"),
        var("ORDER_FSM_SMTP_PASSWORD"),
    ) {
        (Some(user), Some(password)) => Ok(Some(SmtpCredentials::new(user, password))),
        (None, None) => Ok(None),
        _ => Err(MailError::config(
            "set both ORDER_FSM_SMTP_USERNAME and ORDER_FSM_SMTP_PASSWORD, or neither",
        )),
    }
}

/// `(host, port)` of an `smtp://host:port` URL.
pub(crate) fn smtp_authority(url: &str) -> Result<(&str, u16), MailError> {
    let bad = || MailError::config(format!("smtp url `{url}`: expected smtp://host:port"));
    let authority = url
        .strip_prefix("smtp://")
        .ok_or_else(bad)?
        .trim_end_matches('/');
    if authority.contains('@') {
        return Err(MailError::config(
            "smtp url: credentials go in MailConfig::credentials (ORDER_FSM_SMTP_USERNAME / \
             ORDER_FSM_SMTP_PASSWORD), not in the URL",
        ));
    }
    let (host, port) = authority.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    // An IPv6 literal goes to the resolver without its brackets.
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() {
        return Err(bad());
    }
    Ok((host, port))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn from(vars: &[(&str, &str)]) -> Result<MailConfig, MailError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        MailConfig::from_lookup(|name| vars.get(name).cloned())
    }

    #[test]
    fn the_environment_names_one_transport_a_sender_and_optionally_the_rest() {
        let config = from(&[
            ("ORDER_FSM_SMTP_URL", "smtp://127.0.0.1:2525"),
            ("ORDER_FSM_MAIL_FROM", "orders@example.com"),
            ("ORDER_FSM_MAIL_LANGUAGE", "ES"),
            ("ORDER_FSM_SMTP_USERNAME", "shop"),
            ("ORDER_FSM_SMTP_PASSWORD", "secret"),
        ])
        .unwrap();
        assert_eq!(
            config.transport,
            MailTransport::Smtp("smtp://127.0.0.1:2525".into())
        );
        assert_eq!(config.language, Language::Es);
        assert_eq!(
            config.credentials,
            Some(SmtpCredentials::new("shop", "secret"))
        );
        assert!(
            !format!("{config:?}").contains("secret"),
            "Debug hides the password"
        );

        let config = from(&[
            ("ORDER_FSM_MAIL_OUTBOX", "target/outbox"),
            ("ORDER_FSM_MAIL_FROM", "orders@example.com"),
        ])
        .unwrap();
        assert_eq!(
            config,
            MailConfig::outbox("target/outbox", "orders@example.com")
        );

        for bad in [
            &[("ORDER_FSM_MAIL_FROM", "orders@example.com")][..],
            &[("ORDER_FSM_SMTP_URL", "smtp://127.0.0.1:2525")][..],
            &[
                ("ORDER_FSM_SMTP_URL", "smtp://127.0.0.1:2525"),
                ("ORDER_FSM_MAIL_OUTBOX", "target/outbox"),
                ("ORDER_FSM_MAIL_FROM", "orders@example.com"),
            ][..],
            &[
                ("ORDER_FSM_SMTP_URL", "smtp://127.0.0.1:2525"),
                ("ORDER_FSM_MAIL_FROM", "orders@example.com"),
                ("ORDER_FSM_SMTP_USERNAME", "shop"),
            ][..],
            &[
                ("ORDER_FSM_SMTP_URL", "smtp://127.0.0.1:2525"),
                ("ORDER_FSM_MAIL_FROM", "orders@example.com"),
                ("ORDER_FSM_MAIL_LANGUAGE", "fr"),
            ][..],
        ] {
            let err = from(bad).unwrap_err();
            assert!(
                matches!(err, MailError::Config(_)) && !err.is_retryable(),
                "{err}"
            );
        }
    }

    #[test]
    fn smtp_urls_need_a_host_and_a_port_and_no_credentials() {
        assert_eq!(
            smtp_authority("smtp://127.0.0.1:2525/").unwrap(),
            ("127.0.0.1", 2525)
        );
        assert_eq!(smtp_authority("smtp://[::1]:25").unwrap(), ("::1", 25));
        for bad in [
            "http://127.0.0.1:25",
            "smtp://127.0.0.1",
            "smtp://:25",
            "smtp://host:port",
            "smtp://user:secret@relay.example.com:25",
        ] {
            let err = smtp_authority(bad).unwrap_err();
            assert!(!err.to_string().contains("secret"), "{err}");
        }
    }

    #[test]
    fn languages_parse_from_their_codes() {
        for language in Language::ALL {
            assert_eq!(language.to_string().parse::<Language>().unwrap(), language);
        }
        assert_eq!(" Es ".parse::<Language>().unwrap(), Language::Es);
        assert!("fr".parse::<Language>().is_err());
    }
}
