//! State changelogs: the durable latest state of every order, kept per source partition so
//! that the partition's next owner can restore it (the model of Kafka Streams' changelog
//! topics).

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::{
    Error, EventId, HistoryEntry, Lifecycle, OrderId, OrderState, Purchase, Timestamp,
    TransitionRecord,
};

/// The new state of one order, as a runner writes it to a [`StateLog`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct StateChange {
    /// The source partition the order belongs to.
    pub partition: i32,
    /// The order's state after the change.
    pub state: OrderState,
    /// Versions up to this one had their transition records published before this change;
    /// the versions above it were made by this change and are published right after it.
    /// A restorer publishes those again (see [`StateChange::unpublished`]), since the owner
    /// may have crashed in between.
    pub published_up_to: u64,
}

impl StateChange {
    /// `state`, owned by `partition`, with its transitions published up to
    /// `published_up_to` (a version).
    pub fn new(partition: i32, state: OrderState, published_up_to: u64) -> Self {
        Self {
            partition,
            state,
            published_up_to,
        }
    }

    /// The transition records of the versions this change made, oldest first: what may not
    /// have been published if the writer stopped right after the change became durable.
    pub fn unpublished(&self, lifecycle: &Lifecycle) -> Vec<TransitionRecord> {
        if self.state.version <= self.published_up_to {
            return Vec::new();
        }
        TransitionRecord::all_of(lifecycle, &self.state)
            .into_iter()
            .filter(|r| r.version > self.published_up_to)
            .collect()
    }
}

/// A durable log of the latest state of each order, partitioned like the command source.
///
/// # Contract
/// - **Ownership**: only the current owner of a partition appends to it or forgets from it;
///   the runner guarantees this by finishing all work of a partition before it acknowledges
///   the partition's revocation.
/// - **Durability**: `append` returns `Ok` only when every change is durable; `Err` means
///   any of them may or may not be, and the caller appends the *same* changes again.
/// - **Restore**: `restore(p)` returns the latest appended state of every order of partition
///   `p` that was not forgotten since, each once, together with its `published_up_to`. It
///   must not depend on log compaction for correctness (only for speed), and must finish
///   while other partitions are being written.
/// - **Forget**: `forget(p, ids)` makes `restore(p)` leave these orders out (a tombstone).
/// - **Errors**: [`Error::Unavailable`] for transient trouble (the caller retries),
///   another error when the log cannot be used.
#[async_trait]
pub trait StateLog: Send + Sync {
    /// Makes `changes` durable.
    async fn append(&self, changes: &[StateChange]) -> Result<(), Error>;

    /// Leaves `orders` of `partition` out of later restores.
    async fn forget(&self, partition: i32, orders: &[OrderId]) -> Result<(), Error>;

    /// The latest state of every order of `partition` (the caller now owns it).
    async fn restore(&self, partition: i32) -> Result<Vec<StateChange>, Error>;

    /// A mark of how far `partition` was appended: every change whose `append` returned
    /// before this call lies below the mark. `None` when the log keeps no such marks (then
    /// [`Self::published_below`] is never called).
    fn mark(&self, _partition: i32) -> Option<u64> {
        None
    }

    /// Every change of `partition` below `mark` (from [`Self::mark`]) was published: a log
    /// may record it, so a restore after a crash republishes only what came after (the
    /// runner checkpoints like this every second).
    async fn published_below(&self, _partition: i32, _mark: u64) -> Result<(), Error> {
        Ok(())
    }

    /// Orders of `partition` whose latest change lies so far back that restores read much
    /// more than the live orders (a restore reads from the oldest live order's latest
    /// change on). The runner appends their current state again, which moves that point
    /// forward. Default: none.
    fn lagging(&self, _partition: i32) -> Vec<OrderId> {
        Vec::new()
    }

    /// The caller gives `partition` up after a clean hand-over: every change it appended
    /// there was published. A log may record that, so the next owner's restore does not
    /// publish those changes' records again ([`StateChange::published_up_to`] of the restored
    /// changes rises to their version), and drops any bookkeeping kept for the partition.
    /// Not called after a crash, so the next restore republishes what may be missing.
    async fn release(&self, _partition: i32) -> Result<(), Error> {
        Ok(())
    }
}

#[async_trait]
impl<L: StateLog + ?Sized> StateLog for Arc<L> {
    async fn append(&self, changes: &[StateChange]) -> Result<(), Error> {
        (**self).append(changes).await
    }
    async fn forget(&self, partition: i32, orders: &[OrderId]) -> Result<(), Error> {
        (**self).forget(partition, orders).await
    }
    async fn restore(&self, partition: i32) -> Result<Vec<StateChange>, Error> {
        (**self).restore(partition).await
    }
    async fn release(&self, partition: i32) -> Result<(), Error> {
        (**self).release(partition).await
    }
    fn mark(&self, partition: i32) -> Option<u64> {
        (**self).mark(partition)
    }
    fn lagging(&self, partition: i32) -> Vec<OrderId> {
        (**self).lagging(partition)
    }
    async fn published_below(&self, partition: i32, mark: u64) -> Result<(), Error> {
        (**self).published_below(partition, mark).await
    }
}

/// Each order's latest change in one partition, with its position in the log.
type Latest = HashMap<OrderId, (u64, StateChange)>;

/// An in-memory [`StateLog`]: an ideally compacted changelog, for tests and for runners
/// that share one process.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use order_fsm::{Engine, EventId, Lifecycle, MemoryStateLog, Purchase, StateChange, StateLog};
/// use std::sync::Arc;
/// let engine = Engine::new(Arc::new(Lifecycle::ecommerce()));
/// let state = engine.place_with(
///     order_fsm::OrderId::random(), Arc::new(Purchase::example()), EventId::random(),
///     order_fsm::Timestamp::from_micros(1),
/// );
/// let log = MemoryStateLog::new();
/// log.append(&[StateChange::new(3, state.clone(), 0)]).await.unwrap();
/// assert_eq!(log.restore(3).await.unwrap()[0].state, state);
/// log.forget(3, &[state.id]).await.unwrap();
/// assert!(log.restore(3).await.unwrap().is_empty());
/// # });
/// ```
#[derive(Debug, Default)]
pub struct MemoryStateLog {
    /// Per partition, each order's latest change with its position in the log.
    partitions: Mutex<HashMap<i32, Latest>>,
    appended: AtomicU64,
}

impl MemoryStateLog {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    /// Changes appended so far.
    pub fn appended(&self) -> u64 {
        self.appended.load(Ordering::Relaxed)
    }

    /// Orders currently restorable from `partition`.
    pub fn len(&self, partition: i32) -> usize {
        self.lock().get(&partition).map_or(0, HashMap::len)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i32, Latest>> {
        self.partitions.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl StateLog for MemoryStateLog {
    async fn append(&self, changes: &[StateChange]) -> Result<(), Error> {
        let mut map = self.lock();
        for change in changes {
            let position = self.appended.fetch_add(1, Ordering::Relaxed);
            map.entry(change.partition)
                .or_default()
                .insert(change.state.id, (position, change.clone()));
        }
        Ok(())
    }

    async fn forget(&self, partition: i32, orders: &[OrderId]) -> Result<(), Error> {
        if let Some(p) = self.lock().get_mut(&partition) {
            for id in orders {
                p.remove(id);
            }
        }
        Ok(())
    }

    async fn restore(&self, partition: i32) -> Result<Vec<StateChange>, Error> {
        Ok(self
            .lock()
            .get(&partition)
            .map(|p| p.values().map(|(_, c)| c.clone()).collect())
            .unwrap_or_default())
    }

    async fn release(&self, partition: i32) -> Result<(), Error> {
        let mark = self.appended.load(Ordering::Relaxed);
        self.published_below(partition, mark).await
    }

    fn mark(&self, _partition: i32) -> Option<u64> {
        Some(self.appended.load(Ordering::Relaxed))
    }

    async fn published_below(&self, partition: i32, mark: u64) -> Result<(), Error> {
        for (position, change) in self.lock().entry(partition).or_default().values_mut() {
            if *position < mark {
                change.published_up_to = change.state.version;
            }
        }
        Ok(())
    }
}

/// The wire form of a [`StateChange`]'s state (state and event names, not handles), for
/// changelogs that store bytes. JSON through serde.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StateRecord {
    /// The order.
    pub order_id: OrderId,
    /// Its version.
    pub version: u64,
    /// Its state's name.
    pub status: Cow<'static, str>,
    /// The placement's event id.
    pub placed_by: EventId,
    /// Who placed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placed_by_actor: Option<String>,
    /// When it was placed.
    pub created_at: Timestamp,
    /// When it last changed state.
    pub updated_at: Timestamp,
    /// What was bought.
    pub purchase: Arc<Purchase>,
    /// Every transition, oldest first.
    pub history: Vec<HistoryRecord>,
    /// Ids of rejected events.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rejected: Vec<EventId>,
    /// See [`StateChange::published_up_to`].
    pub published_up_to: u64,
}

/// One history entry of a [`StateRecord`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct HistoryRecord {
    /// The event id.
    pub event_id: EventId,
    /// The event's name.
    pub event: Cow<'static, str>,
    /// The state after (the state before is the previous entry's, or the initial state).
    pub to: Cow<'static, str>,
    /// When.
    pub at: Timestamp,
    /// The reason the event carried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Who asked for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
}

impl HistoryRecord {
    /// Event `event_id` named `event` led to state `to` at `at`; no reason, no actor. The
    /// fields are public to fill in the rest.
    pub fn new(
        event_id: EventId,
        event: impl Into<Cow<'static, str>>,
        to: impl Into<Cow<'static, str>>,
        at: Timestamp,
    ) -> Self {
        Self {
            event_id,
            event: event.into(),
            to: to.into(),
            at,
            reason: None,
            actor: None,
        }
    }
}

impl StateRecord {
    /// A record of `order_id` at `version` in `status`, placed by event `placed_by` at
    /// `created_at`; history, rejections and actor start empty, `updated_at` is `created_at`
    /// and nothing is published. The fields are public to fill from a store's columns.
    pub fn new(
        order_id: OrderId,
        version: u64,
        status: impl Into<Cow<'static, str>>,
        placed_by: EventId,
        created_at: Timestamp,
        purchase: Arc<Purchase>,
    ) -> Self {
        Self {
            order_id,
            version,
            status: status.into(),
            placed_by,
            placed_by_actor: None,
            created_at,
            updated_at: created_at,
            purchase,
            history: Vec::new(),
            rejected: Vec::new(),
            published_up_to: 0,
        }
    }

    /// The wire form of `change`.
    pub fn of_change(lifecycle: &Lifecycle, change: &StateChange) -> Self {
        Self::of_state(lifecycle, &change.state, change.published_up_to)
    }

    /// The wire form of `state`, published up to `published_up_to` (see
    /// [`StateChange::published_up_to`]), without building a [`StateChange`].
    pub fn of_state(lifecycle: &Lifecycle, state: &OrderState, published_up_to: u64) -> Self {
        Self {
            order_id: state.id,
            version: state.version,
            status: Cow::Borrowed(lifecycle.state_name(state.status)),
            placed_by: state.placed_by,
            placed_by_actor: state.placed_by_actor.clone(),
            created_at: state.created_at,
            updated_at: state.updated_at,
            purchase: Arc::clone(&state.purchase),
            history: state
                .history
                .iter()
                .map(|h| HistoryRecord {
                    event_id: h.event_id,
                    event: Cow::Borrowed(lifecycle.event_name(h.event)),
                    to: Cow::Borrowed(lifecycle.state_name(h.to)),
                    at: h.at,
                    reason: h.reason.clone(),
                    actor: h.actor.clone(),
                })
                .collect(),
            rejected: state.rejected.clone(),
            published_up_to,
        }
    }

    /// The change this record describes, in `partition`.
    ///
    /// # Errors
    /// [`Error::Decode`] when it names states or events `lifecycle` does not have, or its
    /// history does not add up to its version.
    pub fn into_change(self, lifecycle: &Lifecycle, partition: i32) -> Result<StateChange, Error> {
        let decode = |reason: String| Error::Decode { reason };
        let state_of = |name: &str| {
            lifecycle
                .state(name)
                .ok_or_else(|| decode(format!("unknown state `{name}`")))
        };
        let mut from = lifecycle.initial();
        let mut history = Vec::with_capacity(self.history.len());
        for (i, h) in self.history.into_iter().enumerate() {
            let to = state_of(&h.to)?;
            let event = lifecycle
                .event(&h.event)
                .ok_or_else(|| decode(format!("unknown event `{}`", h.event)))?;
            history.push(HistoryEntry {
                event_id: h.event_id,
                event,
                from,
                to,
                version: i as u64 + 2,
                at: h.at,
                reason: h.reason,
                actor: h.actor,
            });
            from = to;
        }
        let status = state_of(&self.status)?;
        if self.version != history.len() as u64 + 1 || status != from {
            return Err(decode(format!(
                "order {}: version {} and status `{}` do not follow from {} history entries",
                self.order_id,
                self.version,
                self.status,
                history.len()
            )));
        }
        Ok(StateChange {
            partition,
            state: OrderState {
                id: self.order_id,
                purchase: self.purchase,
                status,
                version: self.version,
                placed_by: self.placed_by,
                placed_by_actor: self.placed_by_actor,
                created_at: self.created_at,
                updated_at: self.updated_at,
                history,
                rejected: self.rejected,
            },
            published_up_to: self.published_up_to,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ecommerce, Engine, Event};

    #[test]
    fn a_state_round_trips_through_its_record() {
        let lifecycle = Arc::new(Lifecycle::ecommerce());
        let engine = Engine::new(Arc::clone(&lifecycle));
        let mut state = engine.place_with(
            OrderId::random(),
            Arc::new(Purchase::example()),
            EventId::random(),
            Timestamp::from_micros(10),
        );
        state.placed_by_actor = Some("backend".into());
        for (kind, at, actor) in [
            (ecommerce::PREPARE, 20, Some("ops")),
            (ecommerce::SHIP, 30, None),
        ] {
            let event = Event::new(kind, Timestamp::from_micros(at));
            let t = engine.apply(&state, &event).unwrap();
            state.commit(&t, None, actor.map(str::to_owned)).unwrap();
        }
        state.remember_rejection(EventId::random());
        let change = StateChange {
            partition: 4,
            state,
            published_up_to: 1,
        };
        let json = serde_json::to_vec(&StateRecord::of_change(&lifecycle, &change)).unwrap();
        let back: StateRecord = serde_json::from_slice(&json).unwrap();
        assert_eq!(back.into_change(&lifecycle, 4).unwrap(), change);
        let versions: Vec<u64> = change
            .unpublished(&lifecycle)
            .iter()
            .map(|r| r.version)
            .collect();
        assert_eq!(versions, [2, 3]);
    }

    #[test]
    fn an_inconsistent_record_is_a_decode_error() {
        let lifecycle = Lifecycle::ecommerce();
        let engine = Engine::new(Arc::new(Lifecycle::ecommerce()));
        let state = engine.place_with(
            OrderId::random(),
            Arc::new(Purchase::example()),
            EventId::random(),
            Timestamp::from_micros(10),
        );
        let change = StateChange {
            partition: 0,
            state,
            published_up_to: 0,
        };
        let mut record = StateRecord::of_change(&lifecycle, &change);
        record.version = 3;
        let err = record.into_change(&lifecycle, 0).unwrap_err();
        assert!(matches!(err, Error::Decode { .. }), "{err}");
    }
}
