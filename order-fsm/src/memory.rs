//! In-memory source, sinks and store: the embedded defaults and test doubles.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use tokio::sync::Notify;

use crate::{
    Ack, Command, CommandSink, CommandSource, DeadLetter, DeadLetterSink, Envelope, Error,
    ListQuery, MetricsRecord, MetricsSink, OrderId, OrderState, OrderStore, Origin,
    TransitionRecord, TransitionSink,
};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks cannot leave the data half-written (every
    // critical section is a single push, insert or read), so a poisoned lock is still usable.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// An in-memory log of commands with a committed position, like one Kafka partition with
/// one consumer group: [`MemoryQueue::subscribe`] reads from the first unacknowledged
/// message, so whatever was not acknowledged is delivered again to the next subscriber.
///
/// ```
/// # tokio_test_block_on(async {
/// use order_fsm::{Command, CommandSource, MemoryQueue, Purchase};
/// let queue = MemoryQueue::new();
/// queue.push(Command::place(Purchase::example()));
/// queue.close();
/// let mut source = queue.subscribe();
/// let envelope = source.next().await.unwrap().unwrap();
/// envelope.ack.ack();
/// assert!(source.next().await.unwrap().is_none());
/// assert_eq!(queue.pending(), 0);
/// # });
/// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
/// # }
/// ```
#[derive(Clone, Default, Debug)]
pub struct MemoryQueue {
    inner: Arc<QueueInner>,
}

#[derive(Default, Debug)]
struct QueueInner {
    state: Mutex<QueueState>,
    pushed: Notify,
}

#[derive(Default, Debug)]
struct QueueState {
    /// Offset of `entries[0]`; everything before it is acknowledged.
    base: u64,
    /// Each entry with whether it has been acknowledged.
    entries: VecDeque<(Command, bool)>,
    closed: bool,
}

impl MemoryQueue {
    /// An empty, open queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a command.
    pub fn push(&self, command: Command) {
        lock(&self.inner.state).entries.push_back((command, false));
        self.inner.pushed.notify_waiters();
    }

    /// Appends many commands.
    pub fn extend(&self, commands: impl IntoIterator<Item = Command>) {
        lock(&self.inner.state)
            .entries
            .extend(commands.into_iter().map(|c| (c, false)));
        self.inner.pushed.notify_waiters();
    }

    /// No more commands will come: sources return `None` once they have read everything.
    pub fn close(&self) {
        lock(&self.inner.state).closed = true;
        self.inner.pushed.notify_waiters();
    }

    /// A new reader starting at the first unacknowledged command.
    pub fn subscribe(&self) -> MemorySource {
        let position = lock(&self.inner.state).base;
        MemorySource {
            queue: self.clone(),
            position,
        }
    }

    /// Commands not yet acknowledged (counting from the first unacknowledged one).
    pub fn pending(&self) -> usize {
        lock(&self.inner.state).entries.len()
    }

    /// Offset up to which every command is acknowledged.
    pub fn committed(&self) -> u64 {
        lock(&self.inner.state).base
    }

    fn acknowledge(inner: &QueueInner, offset: u64) {
        let mut state = lock(&inner.state);
        let Some(index) = offset.checked_sub(state.base) else {
            return;
        };
        if let Some(entry) = state.entries.get_mut(index as usize) {
            entry.1 = true;
        }
        while state.entries.front().is_some_and(|e| e.1) {
            state.entries.pop_front();
            state.base += 1;
        }
    }
}

#[async_trait]
impl CommandSink for MemoryQueue {
    async fn submit(&self, commands: &[Command]) -> Result<(), Error> {
        if lock(&self.inner.state).closed {
            return Err(Error::Closed("memory queue"));
        }
        self.extend(commands.iter().cloned());
        Ok(())
    }
}

/// A reader of a [`MemoryQueue`]; see [`CommandSource`] for the contract it keeps.
#[derive(Debug)]
pub struct MemorySource {
    queue: MemoryQueue,
    position: u64,
}

#[async_trait]
impl CommandSource for MemorySource {
    async fn next(&mut self) -> Result<Option<Envelope>, Error> {
        loop {
            let pushed = self.queue.inner.pushed.notified();
            tokio::pin!(pushed);
            pushed.as_mut().enable();
            {
                let state = lock(&self.queue.inner.state);
                self.position = self.position.max(state.base);
                let index = (self.position - state.base) as usize;
                if let Some((command, _)) = state.entries.get(index) {
                    let offset = self.position;
                    self.position += 1;
                    let inner = Arc::clone(&self.queue.inner);
                    return Ok(Some(Envelope {
                        command: command.clone(),
                        origin: Origin {
                            partition: 0,
                            offset: offset as i64,
                        },
                        ack: Ack::new(move || MemoryQueue::acknowledge(&inner, offset)),
                    }));
                }
                if state.closed {
                    return Ok(None);
                }
            }
            pushed.await;
        }
    }
}

/// A sink that keeps what it is given: transitions, dead letters and metrics.
///
/// [`MemorySink::counting`] keeps only counts, for benchmarks.
#[derive(Debug, Default)]
pub struct MemorySink {
    keep: bool,
    published: AtomicU64,
    records: Mutex<Vec<TransitionRecord>>,
    dead_letters: Mutex<Vec<DeadLetter>>,
    metrics: Mutex<Vec<MetricsRecord>>,
}

impl MemorySink {
    /// A sink that keeps every record.
    pub fn new() -> Self {
        Self {
            keep: true,
            ..Self::default()
        }
    }

    /// A sink that only counts transition records.
    pub fn counting() -> Self {
        Self::default()
    }

    /// Transition records published so far, in order.
    pub fn records(&self) -> Vec<TransitionRecord> {
        lock(&self.records).clone()
    }

    /// How many transition records were published.
    pub fn published(&self) -> u64 {
        self.published.load(Ordering::Relaxed)
    }

    /// Dead letters so far.
    pub fn dead_letters(&self) -> Vec<DeadLetter> {
        lock(&self.dead_letters).clone()
    }

    /// Metric records so far.
    pub fn metrics(&self) -> Vec<MetricsRecord> {
        lock(&self.metrics).clone()
    }
}

#[async_trait]
impl TransitionSink for MemorySink {
    async fn publish(&self, records: &[TransitionRecord]) -> Result<(), Error> {
        if self.keep {
            lock(&self.records).extend_from_slice(records);
        }
        self.published
            .fetch_add(records.len() as u64, Ordering::Relaxed);
        Ok(())
    }
}

#[async_trait]
impl DeadLetterSink for MemorySink {
    async fn dead_letter(&self, letter: &DeadLetter) -> Result<(), Error> {
        lock(&self.dead_letters).push(letter.clone());
        Ok(())
    }
}

#[async_trait]
impl MetricsSink for MemorySink {
    async fn record(&self, metrics: &MetricsRecord) -> Result<(), Error> {
        lock(&self.metrics).push(metrics.clone());
        Ok(())
    }
}

const STORE_SHARDS: usize = 32;

/// Hashes order ids (random UUIDs) by folding their bytes: several times faster than SipHash
/// on the store's hot path. Not DoS-resistant; this store is an embedded default and a test
/// double, not a server-side index of untrusted keys.
#[derive(Default)]
struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = (self.0 ^ u64::from_le_bytes(word))
                .wrapping_mul(0x9e37_79b9_7f4a_7c15)
                .rotate_left(23);
        }
    }

    // Length prefixes say nothing about a fixed-size id.
    fn write_usize(&mut self, _: usize) {}

    fn finish(&self) -> u64 {
        self.0
    }
}

type Shard = HashMap<OrderId, OrderState, std::hash::BuildHasherDefault<IdHasher>>;

/// A store in memory, sharded by order id to keep lock contention low.
#[derive(Debug)]
pub struct MemoryStore {
    shards: Box<[Mutex<Shard>]>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self {
            shards: (0..STORE_SHARDS)
                .map(|_| Mutex::new(Shard::default()))
                .collect(),
        }
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store with room for `orders` orders without growing.
    pub fn with_capacity(orders: usize) -> Self {
        let per_shard = orders.div_ceil(STORE_SHARDS);
        Self {
            shards: (0..STORE_SHARDS)
                .map(|_| {
                    Mutex::new(Shard::with_capacity_and_hasher(
                        per_shard,
                        Default::default(),
                    ))
                })
                .collect(),
        }
    }

    fn shard(&self, id: OrderId) -> &Mutex<Shard> {
        &self.shards[(id.shard_key() % STORE_SHARDS as u64) as usize]
    }

    /// Number of orders stored.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).len()).sum()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Synchronous compare-and-set, the body of [`OrderStore::compare_and_set`].
    ///
    /// # Errors
    /// [`Error::Conflict`] when the stored version is not `expected_version`.
    pub fn compare_and_set_now(
        &self,
        expected_version: u64,
        state: OrderState,
    ) -> Result<(), Error> {
        let mut shard = lock(self.shard(state.id));
        let actual = shard.get(&state.id).map(|s| s.version);
        if actual.unwrap_or(0) != expected_version {
            return Err(Error::Conflict {
                order_id: state.id,
                expected: expected_version,
                actual,
            });
        }
        shard.insert(state.id, state);
        Ok(())
    }

    /// Runs `f` on the stored state of `id` under its shard's lock, in place (no copy), and
    /// keeps what `f` changed; `None` if there is no such order. This is atomic like a
    /// compare-and-set, for single-process callers that want to skip the copy.
    ///
    /// `f` must keep `version` consistent with the history, as [`crate::Engine`] does.
    pub fn update<R>(&self, id: OrderId, f: impl FnOnce(&mut OrderState) -> R) -> Option<R> {
        lock(self.shard(id)).get_mut(&id).map(f)
    }

    /// Applies a published record to the store, as a read model does: a placement creates
    /// the order, a transition extends it. Returns `false` (changing nothing) for a repeat,
    /// an out-of-order record or one the lifecycle cannot read.
    pub fn project(&self, lifecycle: &crate::Lifecycle, record: &TransitionRecord) -> bool {
        let mut shard = lock(self.shard(record.order_id));
        match shard.get_mut(&record.order_id) {
            Some(state) => state.apply_record(lifecycle, record),
            None => match OrderState::from_placement(lifecycle, record) {
                Some(state) => {
                    shard.insert(state.id, state);
                    true
                }
                None => false,
            },
        }
    }

    /// Synchronous read, the body of [`OrderStore::get`].
    pub fn get_now(&self, id: OrderId) -> Option<OrderState> {
        lock(self.shard(id)).get(&id).cloned()
    }
}

#[async_trait]
impl OrderStore for MemoryStore {
    async fn get(&self, id: OrderId) -> Result<Option<OrderState>, Error> {
        Ok(self.get_now(id))
    }

    async fn compare_and_set(&self, expected_version: u64, state: OrderState) -> Result<(), Error> {
        self.compare_and_set_now(expected_version, state)
    }

    async fn put(&self, state: OrderState) -> Result<(), Error> {
        lock(self.shard(state.id)).insert(state.id, state);
        Ok(())
    }

    /// Removes the orders: a memory store holds only what its runner owns.
    async fn evict(&self, ids: &[OrderId]) -> Result<(), Error> {
        for id in ids {
            lock(self.shard(*id)).remove(id);
        }
        Ok(())
    }

    async fn list(&self, query: ListQuery) -> Result<Vec<OrderState>, Error> {
        let mut page: Vec<OrderState> = Vec::new();
        for shard in self.shards.iter() {
            let shard = lock(shard);
            page.extend(
                shard
                    .values()
                    .filter(|s| query.status.is_none_or(|status| s.status == status))
                    .filter(|s| query.after.is_none_or(|after| s.id > after))
                    .cloned(),
            );
        }
        page.sort_unstable_by_key(|s| s.id);
        page.truncate(query.limit);
        Ok(page)
    }
}
