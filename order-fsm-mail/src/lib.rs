#![doc = include_str!("../README.md")]

mod builder;
mod config;
mod error;
mod notifier;

pub use builder::MailBuilder;
pub use config::{Language, MailConfig, MailTransport, SmtpCredentials};
pub use error::{MailError, SourceError};
pub use notifier::{EmailNotifier, Mail};
