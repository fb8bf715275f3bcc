//! A worker's control items: adopting and releasing partitions, checkpoints, refreshes of
//! lagging orders, and the timers and retention of the orders it holds.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Interrupted, Work, Worker};
use crate::{OrderId, StateChange};

impl Worker {
    /// Handles an adoption or a revocation.
    pub(super) async fn control(&mut self, control: Work) -> Result<(), Interrupted> {
        let shared = Arc::clone(&self.shared);
        match control {
            Work::Adopt { partition, changes } => {
                let epoch = self.ownership.adopt(partition);
                let lifecycle = Arc::clone(shared.engine.lifecycle());
                let now = Instant::now();
                let mut records = Vec::new();
                for change in changes {
                    let state = &change.state;
                    self.ownership.hold(
                        partition,
                        state.id,
                        lifecycle.is_terminal(state.status),
                        now,
                    );
                    if let (Some(dwell), Some(_)) =
                        (shared.auto_advance, lifecycle.advance_event(state.status))
                    {
                        // Due when the state's dwell, counted from when it was entered, ends.
                        let due = state.updated_at.plus(dwell.sample(&mut self.rng));
                        let delay = Duration::from_micros(due.micros_since(shared.clock.now()));
                        self.arm(state.id, state.version, Some((partition, epoch)), delay);
                    }
                    records.extend(change.unpublished(&lifecycle));
                    self.retrying("store", || shared.store.put(change.state.clone()))
                        .await?;
                }
                if !records.is_empty() {
                    tracing::debug!(
                        worker = self.id,
                        partition,
                        records = records.len(),
                        "publishing again what the previous owner may not have"
                    );
                }
                if !records.is_empty() {
                    super::publish::publish(&shared, &mut self.stop, self.id, &records).await?;
                }
            }
            Work::Revoke { partitions, done } => {
                for partition in partitions {
                    let orders = self.ownership.release(partition);
                    // Only a store that can be restored is emptied; without a state log
                    // the store is the only copy.
                    if shared.state_log.is_some() {
                        self.retrying("store", || shared.store.evict(&orders))
                            .await?;
                    }
                }
                let _ = done.send(());
            }
            Work::Checkpoint(done) => {
                let _ = done.send(());
            }
            Work::Refresh { partition, orders } => {
                let Some(log) = &shared.state_log else {
                    return Ok(());
                };
                if !self.ownership.holds(partition) {
                    return Ok(()); // revoked since the runner asked
                }
                let mut changes = Vec::with_capacity(orders.len());
                for id in orders {
                    let state = self.retrying("store", || shared.store.get(id)).await?;
                    if let Some(state) = state {
                        // Nothing new to publish: the same state, appended again.
                        let published_up_to = state.version;
                        changes.push(StateChange {
                            partition,
                            state,
                            published_up_to,
                        });
                    }
                }
                self.retrying("state log", || log.append(&changes)).await?;
                tracing::debug!(
                    partition,
                    orders = changes.len(),
                    "refreshed lagging orders"
                );
            }
            work => self.control = Some(work),
        }
        Ok(())
    }

    /// Lets finished orders whose retention passed leave the store (and the state log).
    pub(super) async fn expire(&mut self) -> Result<(), Interrupted> {
        let shared = Arc::clone(&self.shared);
        let Some(retention) = shared.retention else {
            return Ok(());
        };
        for (partition, mut orders) in self.ownership.expire(retention, Instant::now()) {
            // An order the batch in flight wrote is held again when that batch settles, and
            // expires from then on.
            if let Some(publishing) = &self.publishing {
                orders.retain(|&id| publishing.published_up_to(id).is_none());
            }
            if orders.is_empty() {
                continue;
            }
            if let Some(log) = &shared.state_log {
                self.retrying("state log", || log.forget(partition, &orders))
                    .await?;
            }
            self.retrying("store", || shared.store.evict(&orders))
                .await?;
        }
        Ok(())
    }

    /// Schedules an automatic advance of `order_id` from `version` after `delay`.
    pub(super) fn arm(
        &mut self,
        order_id: OrderId,
        version: u64,
        owner: Option<(i32, u64)>,
        delay: Duration,
    ) {
        self.pending_timers += 1;
        let tx = self.timers_tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = tx.send(Work::Advance {
                order_id,
                version,
                owner,
            });
        });
    }
}
