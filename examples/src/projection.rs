//! The intake's read model: a [`TransitionSink`] that projects every transition into a
//! store and a watch hub, so an intake can answer `GetOrder`, `ListOrders` and `WatchOrder`.
//! An (ephemeral) follower of the transitions topic feeds it; see [`crate::followers`].

use std::sync::Arc;

use async_trait::async_trait;
use order_fsm::{Error, Lifecycle, MemoryStore, TransitionRecord, TransitionSink};
use order_fsm_grpc::WatchHub;

/// Projects transitions into `store` (an older or repeated record changes nothing) and
/// tells `hub`'s watchers about the ones that changed an order.
pub struct ReadModel {
    lifecycle: Arc<Lifecycle>,
    store: Arc<MemoryStore>,
    hub: WatchHub,
}

impl ReadModel {
    /// A read model over `store` and `hub`.
    pub fn new(lifecycle: Arc<Lifecycle>, store: Arc<MemoryStore>, hub: WatchHub) -> Self {
        Self {
            lifecycle,
            store,
            hub,
        }
    }
}

#[async_trait]
impl TransitionSink for ReadModel {
    async fn publish(&self, records: &[TransitionRecord]) -> Result<(), Error> {
        let applied: Vec<TransitionRecord> = records
            .iter()
            .filter(|r| self.store.project(&self.lifecycle, r))
            .cloned()
            .collect();
        if applied.is_empty() {
            return Ok(());
        }
        self.hub.publish(&applied).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use order_fsm::OrderStore;

    #[tokio::test]
    async fn projects_each_version_once_and_tells_the_watchers() {
        let lifecycle = Arc::new(Lifecycle::ecommerce());
        let store = Arc::new(MemoryStore::new());
        let model = ReadModel::new(Arc::clone(&lifecycle), store.clone(), WatchHub::default());
        let records = order_fsm::testing::sample_records();
        model.publish(&records[..3]).await.unwrap();
        model.publish(&records).await.unwrap(); // a repeat of the first three, then the rest
        model.publish(&records[..2]).await.unwrap(); // older records change nothing
        let order = store.get(records[0].order_id).await.unwrap().unwrap();
        assert_eq!(order.version, 5);
        assert_eq!(lifecycle.state_name(order.status), "completed");
    }
}
