//! The intake's read model: a [`TransitionSink`] that projects every transition into a
//! store and a watch hub, so an intake can answer `GetOrder`, `ListOrders` and `WatchOrder`.
//! An (ephemeral) follower of the transitions topic feeds it; see [`crate::followers`].

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use order_fsm::{
    Error, Lifecycle, MemoryStore, OrderId, OrderStore, TransitionRecord, TransitionSink,
};
use order_fsm_grpc::WatchHub;

use crate::dashboard::{Dashboard, OrdersPerState};

/// Projects transitions into `store` (an older or repeated record changes nothing) and
/// tells `hub`'s watchers about the ones that changed an order. With
/// [`ReadModel::keep_finished`] it holds only the latest finished orders (memory bounded
/// by live orders plus that many); older ones are for Elasticsearch to answer.
///
/// It also keeps the live gauge [`order_fsm::telemetry::ORDERS`]: how many orders are in
/// each state, by the latest record of each (finished orders it no longer holds included).
pub struct ReadModel {
    lifecycle: Arc<Lifecycle>,
    store: Arc<MemoryStore>,
    hub: WatchHub,
    keep_finished: Option<usize>,
    finished: Mutex<VecDeque<OrderId>>,
    per_state: Arc<OrdersPerState>,
    dashboard: Option<Arc<Dashboard>>,
}

impl ReadModel {
    /// A read model over `store` and `hub`.
    pub fn new(lifecycle: Arc<Lifecycle>, store: Arc<MemoryStore>, hub: WatchHub) -> Self {
        Self {
            per_state: Arc::new(OrdersPerState::new(Arc::clone(&lifecycle))),
            dashboard: None,
            lifecycle,
            store,
            hub,
            keep_finished: None,
            finished: Mutex::default(),
        }
    }

    /// Also feeds `dashboard` every record it applies, and keeps the per-state counts the
    /// dashboard shows (the same as the gauge's).
    #[must_use]
    pub fn with_dashboard(mut self, dashboard: Arc<Dashboard>) -> Self {
        self.per_state = Arc::clone(dashboard.orders_per_state());
        self.dashboard = Some(dashboard);
        self
    }

    /// Keeps at most `orders` finished orders, dropping the oldest finished first.
    #[must_use]
    pub fn keep_finished(mut self, orders: usize) -> Self {
        self.keep_finished = Some(orders);
        self
    }

    /// Notes the orders `applied` finished and returns those to drop.
    fn over_the_bound(&self, applied: &[TransitionRecord]) -> Vec<OrderId> {
        let Some(keep) = self.keep_finished else {
            return Vec::new();
        };
        let mut finished = self.finished.lock().unwrap_or_else(|p| p.into_inner());
        for record in applied {
            let state = self.lifecycle.state(&record.to);
            if state.is_some_and(|s| self.lifecycle.is_terminal(s)) {
                finished.push_back(record.order_id);
            }
        }
        let excess = finished.len().saturating_sub(keep);
        finished.drain(..excess).collect()
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
        self.per_state.count(&applied);
        if let Some(dashboard) = &self.dashboard {
            dashboard.observe(&applied);
        }
        let dropped = self.over_the_bound(&applied);
        if !dropped.is_empty() {
            self.store.evict(&dropped).await?;
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

    #[tokio::test]
    async fn keeps_only_the_latest_finished_orders() {
        let lifecycle = Arc::new(Lifecycle::ecommerce());
        let store = Arc::new(MemoryStore::new());
        let model = ReadModel::new(Arc::clone(&lifecycle), store.clone(), WatchHub::default())
            .keep_finished(2);
        let orders: Vec<_> = (0..3)
            .map(|_| order_fsm::testing::sample_records())
            .collect();
        let live = &orders[2][..2]; // placed and one transition: not finished
        for records in &orders[..2] {
            model.publish(records).await.unwrap();
        }
        model.publish(live).await.unwrap();
        assert_eq!(store.len(), 3, "two finished and one live");
        model.publish(&orders[2][2..]).await.unwrap(); // the third finishes: the first goes
        assert!(store.get(orders[0][0].order_id).await.unwrap().is_none());
        for records in &orders[1..] {
            assert!(store.get(records[0].order_id).await.unwrap().is_some());
        }
    }
}
