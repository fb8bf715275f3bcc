//! What one worker holds of each partition its runner owns: the orders, and the finished
//! ones waiting for their retention to pass.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use crate::OrderId;

/// The orders of one owned partition that this worker holds.
#[derive(Debug, Default)]
struct Held {
    /// Changes at every (re)assignment: timers armed under an older epoch are stale.
    epoch: u64,
    orders: HashSet<OrderId>,
}

/// One worker's orders, per owned partition.
#[derive(Debug, Default)]
pub(super) struct Ownership {
    partitions: HashMap<i32, Held>,
    /// Finished orders in the order they finished, with when.
    finished: VecDeque<(Instant, i32, OrderId)>,
    epochs: u64,
}

impl Ownership {
    /// Starts (or restarts) holding `partition`; returns its new epoch.
    pub(super) fn adopt(&mut self, partition: i32) -> u64 {
        self.epochs += 1;
        let held = self.partitions.entry(partition).or_default();
        held.epoch = self.epochs;
        self.epochs
    }

    /// The epoch of `partition`, adopting it if it is new (sources that never report
    /// ownership own every partition they deliver from).
    pub(super) fn epoch(&mut self, partition: i32) -> u64 {
        match self.partitions.get(&partition) {
            Some(held) => held.epoch,
            None => self.adopt(partition),
        }
    }

    /// Whether a timer armed for `partition` under `epoch` is still valid.
    pub(super) fn is_current(&self, partition: i32, epoch: u64) -> bool {
        self.partitions
            .get(&partition)
            .is_some_and(|held| held.epoch == epoch)
    }

    /// Whether `partition` is held here.
    pub(super) fn holds(&self, partition: i32) -> bool {
        self.partitions.contains_key(&partition)
    }

    /// Records that `order` of `partition` is held here; `finished` starts its retention.
    pub(super) fn hold(&mut self, partition: i32, order: OrderId, finished: bool, now: Instant) {
        self.partitions
            .entry(partition)
            .or_default()
            .orders
            .insert(order);
        if finished {
            self.finished.push_back((now, partition, order));
        }
    }

    /// Stops holding `partition`; returns its orders.
    pub(super) fn release(&mut self, partition: i32) -> Vec<OrderId> {
        self.finished.retain(|&(_, p, _)| p != partition);
        self.partitions
            .remove(&partition)
            .map(|held| held.orders.into_iter().collect())
            .unwrap_or_default()
    }

    /// Finished orders whose retention has passed, per partition; they are no longer held.
    pub(super) fn expire(&mut self, retention: Duration, now: Instant) -> Vec<(i32, Vec<OrderId>)> {
        let mut out: HashMap<i32, Vec<OrderId>> = HashMap::new();
        while let Some(&(at, partition, order)) = self.finished.front() {
            if now.saturating_duration_since(at) < retention {
                break;
            }
            self.finished.pop_front();
            if let Some(held) = self.partitions.get_mut(&partition) {
                if held.orders.remove(&order) {
                    out.entry(partition).or_default().push(order);
                }
            }
        }
        out.into_iter().collect()
    }

    /// Orders held, over every partition.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.partitions.values().map(|h| h.orders.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finished_orders_expire_after_their_retention_and_release_drops_a_partition() {
        let mut own = Ownership::default();
        let t0 = Instant::now();
        let (a, b, c) = (OrderId::random(), OrderId::random(), OrderId::random());
        let epoch = own.adopt(1);
        own.hold(1, a, false, t0);
        own.hold(1, b, true, t0);
        own.hold(2, c, true, t0 + Duration::from_secs(5));
        assert_eq!(own.len(), 3);
        assert!(own.is_current(1, epoch));
        assert!(own
            .expire(Duration::from_secs(10), t0 + Duration::from_secs(9))
            .is_empty());
        let expired = own.expire(Duration::from_secs(10), t0 + Duration::from_secs(10));
        assert_eq!(expired, vec![(1, vec![b])]);
        assert_eq!(own.len(), 2);
        let mut released = own.release(1);
        released.sort();
        assert_eq!(released, vec![a]);
        assert!(!own.is_current(1, epoch));
        let again = own.adopt(1);
        assert_ne!(again, epoch);
        // c's partition was not released; its retention runs on.
        let expired = own.expire(Duration::from_secs(10), t0 + Duration::from_secs(15));
        assert_eq!(expired, vec![(2, vec![c])]);
    }
}
