//! The intake's own record of the orders it placed a moment ago, so that a read or an event
//! that outruns the workers is answered "accepted, not visible yet" instead of "not found".

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::OrderId;

/// Orders placed within the last `window`, at most `capacity` of them (the oldest are
/// forgotten first). Lookups and inserts are O(1) under one short lock.
#[derive(Debug)]
pub(crate) struct RecentPlacements {
    window: Duration,
    capacity: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    order: VecDeque<(OrderId, Instant)>,
    ids: HashMap<OrderId, Instant>,
}

impl RecentPlacements {
    pub(crate) fn new(window: Duration, capacity: usize) -> Self {
        Self {
            window,
            capacity: capacity.max(1),
            inner: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records `ids` as placed now.
    pub(crate) fn insert(&self, ids: impl IntoIterator<Item = OrderId>) {
        let now = Instant::now();
        let mut inner = self.lock();
        for id in ids {
            if inner.ids.insert(id, now).is_none() {
                inner.order.push_back((id, now));
            }
        }
        while let Some(&(oldest, at)) = inner.order.front() {
            if inner.order.len() <= self.capacity && now.duration_since(at) <= self.window {
                break;
            }
            inner.order.pop_front();
            inner.ids.remove(&oldest);
        }
    }

    /// Whether `id` was placed here within the window.
    pub(crate) fn contains(&self, id: OrderId) -> bool {
        self.lock()
            .ids
            .get(&id)
            .is_some_and(|at| at.elapsed() <= self.window)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_within_the_window_and_the_capacity() {
        let recent = RecentPlacements::new(Duration::from_millis(100), 3);
        let ids: Vec<OrderId> = (0..4).map(|_| OrderId::random()).collect();
        recent.insert(ids[..3].iter().copied());
        assert!(ids[..3].iter().all(|&id| recent.contains(id)));
        assert!(!recent.contains(ids[3]));
        // Over capacity: the oldest goes.
        recent.insert([ids[3]]);
        assert!(!recent.contains(ids[0]));
        assert!(recent.contains(ids[3]));
        // Past the window: all go.
        std::thread::sleep(Duration::from_millis(150));
        assert!(!recent.contains(ids[3]));
    }
}
