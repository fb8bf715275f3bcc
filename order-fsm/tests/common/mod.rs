//! What the runner's integration tests share.

use async_trait::async_trait;
use order_fsm::{CommandSource, Envelope, Error, SourceEvent};
use tokio::sync::mpsc;

/// A source driven by the test: each event is sent by hand.
pub(crate) struct Scripted(pub(crate) mpsc::UnboundedReceiver<SourceEvent>);

#[async_trait]
impl CommandSource for Scripted {
    async fn next(&mut self) -> Result<Option<Envelope>, Error> {
        unreachable!("the runner reads next_event")
    }
    async fn next_event(&mut self) -> Result<Option<SourceEvent>, Error> {
        Ok(self.0.recv().await)
    }
}
