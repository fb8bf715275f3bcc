//! Sources of commands, with one acknowledgement per message.

use std::fmt;

use async_trait::async_trait;

use crate::{Command, Error, Origin};

/// The acknowledgement of one message: call [`Ack::ack`] once its effects are durable.
///
/// Dropping an `Ack` without calling it leaves the message unacknowledged, so the source
/// delivers it again (after a restart or rebalance).
#[must_use = "an Ack that is dropped leaves its message unacknowledged"]
pub struct Ack(Option<Box<dyn FnOnce() + Send + Sync + 'static>>);

impl Ack {
    /// An acknowledgement that runs `f` when acknowledged.
    pub fn new(f: impl FnOnce() + Send + Sync + 'static) -> Self {
        Self(Some(Box::new(f)))
    }

    /// An acknowledgement that does nothing (for sources without redelivery).
    pub fn none() -> Self {
        Self(None)
    }

    /// Acknowledges the message.
    pub fn ack(mut self) {
        if let Some(f) = self.0.take() {
            f();
        }
    }
}

impl fmt::Debug for Ack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "Ack(pending)"
        } else {
            "Ack(none)"
        })
    }
}

/// One delivered command with its acknowledgement and origin.
#[derive(Debug)]
#[non_exhaustive]
pub struct Envelope {
    /// The command.
    pub command: Command,
    /// Where it came from (partition, offset).
    pub origin: Origin,
    /// Acknowledge once the command's effects are durable.
    pub ack: Ack,
}

impl Envelope {
    /// `command`, read at `origin`, acknowledged through `ack`.
    pub fn new(command: Command, origin: Origin, ack: Ack) -> Self {
        Self {
            command,
            origin,
            ack,
        }
    }
}

/// What a [`CommandSource`] yields: a command, or a change in which partitions it owns.
#[derive(Debug)]
#[non_exhaustive]
pub enum SourceEvent {
    /// A command to apply.
    Command(Envelope),
    /// These partitions are now owned by this reader. Yielded before any command of them.
    Assigned(Vec<i32>),
    /// These partitions are being taken away. No command of them follows until they are
    /// assigned again. Call [`Ack::ack`] on `done` once every command of them that was
    /// yielded before is finished (applied and durable, or abandoned unacknowledged): the
    /// source waits for it (within a bound) before the next owner may start.
    Revoked {
        /// The partitions.
        partitions: Vec<i32>,
        /// Acknowledge when their work is finished.
        done: Ack,
    },
}

/// A source of commands (a Kafka consumer, an in-memory queue, ...).
///
/// # Contract
/// - **Delivery**: at least once. A message whose [`Ack`] was not called is delivered again
///   to the next reader (after a restart or a rebalance); an acknowledged one may be too,
///   so consumers deduplicate by event id.
/// - **Ordering**: messages about one order (same [`Command::order_id`]) are yielded in the
///   order they were produced. Acknowledgements may come out of order; a source only
///   considers a position done when every message before it is acknowledged.
/// - **Bad input**: a message that cannot be decoded is sent to the source's dead-letter
///   destination with the reason and never yielded; `next` does not fail because of it.
/// - **Errors**: `next` returns [`Error::Unavailable`] for transient trouble (the caller
///   retries) and another error when the source cannot go on.
/// - **End**: `Ok(None)` means the source is exhausted or closed; a live source waits.
/// - **Ownership**: every command comes from a partition ([`Origin::partition`]); the
///   orders of a partition belong to whoever reads it. A source shared by several readers
///   (a consumer group) reports, through [`CommandSource::next_event`], when a partition is
///   [assigned](SourceEvent::Assigned) to this reader (before its first command) and when it
///   is [revoked](SourceEvent::Revoked) (after its last command), and waits for the
///   revocation's acknowledgement before another reader gets the partition. A source that
///   never reports ownership (the default `next_event`, e.g. an in-memory queue) owns every
///   partition it yields commands from, for good.
#[async_trait]
pub trait CommandSource: Send {
    /// The next command, waiting for one if needed. A source that reports ownership
    /// acknowledges revocations itself here (for callers that do not track ownership).
    async fn next(&mut self) -> Result<Option<Envelope>, Error>;

    /// The next command or ownership change (default: the commands of [`Self::next`]).
    async fn next_event(&mut self) -> Result<Option<SourceEvent>, Error> {
        Ok(self.next().await?.map(SourceEvent::Command))
    }
}

#[async_trait]
impl<S: CommandSource + ?Sized> CommandSource for Box<S> {
    async fn next(&mut self) -> Result<Option<Envelope>, Error> {
        (**self).next().await
    }
    async fn next_event(&mut self) -> Result<Option<SourceEvent>, Error> {
        (**self).next_event().await
    }
}

/// Where commands are submitted: a Kafka topic, an in-memory queue. The other end of a
/// [`CommandSource`]; the gRPC intake writes to one.
///
/// # Contract
/// - `Ok` means every command of the batch is durable and will be delivered to the
///   corresponding source; `Err` means the caller must assume none is and may submit again
///   (commands carry event ids, so a repeat is recognised as a duplicate downstream).
/// - Commands of one order keep their relative order.
/// - Errors: [`Error::Unavailable`] when retrying may help, another error when it cannot.
#[async_trait]
pub trait CommandSink: Send + Sync {
    /// Submits commands.
    async fn submit(&self, commands: &[Command]) -> Result<(), Error>;
}

#[async_trait]
impl<S: CommandSink + ?Sized> CommandSink for std::sync::Arc<S> {
    async fn submit(&self, commands: &[Command]) -> Result<(), Error> {
        (**self).submit(commands).await
    }
}
