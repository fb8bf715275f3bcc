//! Stores of order states with compare-and-set on version.

use std::sync::Arc;

use async_trait::async_trait;

use crate::{Error, OrderId, OrderState, StateId};

/// A page request for [`OrderStore::list`]: orders in ascending id order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ListQuery {
    /// Only orders in this state.
    pub status: Option<StateId>,
    /// Only orders with an id greater than this (the previous page's last id).
    pub after: Option<OrderId>,
    /// Page size.
    pub limit: usize,
}

impl Default for ListQuery {
    fn default() -> Self {
        Self {
            status: None,
            after: None,
            limit: 100,
        }
    }
}

impl ListQuery {
    /// The first page of at most `limit` orders, in any state.
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            ..Self::default()
        }
    }

    /// Only orders in `status`.
    #[must_use]
    pub fn with_status(mut self, status: Option<StateId>) -> Self {
        self.status = status;
        self
    }

    /// Only orders after `id` (the last id of the previous page).
    #[must_use]
    pub fn after(mut self, id: Option<OrderId>) -> Self {
        self.after = id;
        self
    }
}

/// A store of the current state of every order.
///
/// # Contract
/// - **Compare-and-set**: [`OrderStore::compare_and_set`] writes `state` only if the stored
///   version equals `expected_version` (0 meaning "no such order"); otherwise it fails with
///   [`Error::Conflict`] naming the version found, and writes nothing.
/// - **Consistency**: a successful write is visible to every later `get` and `list` on the same
///   store.
/// - **Listing**: [`OrderStore::list`] returns orders in ascending id order, at most
///   `limit`, strictly after `after`, filtered by status.
/// - **Batches**: [`OrderStore::compare_and_set_many`] applies each write as
///   `compare_and_set` would, independently; a store that can should do it in one round trip
///   (the runner calls it once per batch).
/// - **Errors**: [`Error::Unavailable`] for transient trouble (the caller retries),
///   [`Error::Backend`] otherwise.
#[async_trait]
pub trait OrderStore: Send + Sync {
    /// The current state of an order, `None` if unknown.
    async fn get(&self, id: OrderId) -> Result<Option<OrderState>, Error>;

    /// Writes `state` if the stored version is `expected_version` (0: absent).
    async fn compare_and_set(&self, expected_version: u64, state: OrderState) -> Result<(), Error>;

    /// One page of orders.
    async fn list(&self, query: ListQuery) -> Result<Vec<OrderState>, Error>;

    /// The current states of `ids`, in the same order (`None` for unknown ones). The runner
    /// reads a whole batch's orders with one call; the default calls [`Self::get`] for each,
    /// stores with a network round trip per call should override it with one.
    async fn get_many(&self, ids: &[OrderId]) -> Result<Vec<Option<OrderState>>, Error> {
        let mut states = Vec::with_capacity(ids.len());
        for &id in ids {
            states.push(self.get(id).await?);
        }
        Ok(states)
    }

    /// Compare-and-sets every `(expected_version, state)` of `writes`, each on its own: a
    /// write whose expected version does not match is skipped and the others are written.
    /// `writes` name each order at most once.
    ///
    /// Returns `Ok` when every write happened, [`Error::Conflict`] for the first skipped one
    /// (every non-conflicting write happened), or another error when any write may not have
    /// happened (the caller reads again and retries). The default writes one after the
    /// other; stores with a network round trip per call should override it with one.
    async fn compare_and_set_many(&self, writes: Vec<(u64, OrderState)>) -> Result<(), Error> {
        let mut conflict = None;
        for (expected, state) in writes {
            match self.compare_and_set(expected, state).await {
                Ok(()) => {}
                Err(e @ Error::Conflict { .. }) => {
                    conflict.get_or_insert(e);
                }
                Err(e) => return Err(e),
            }
        }
        conflict.map_or(Ok(()), Err)
    }

    /// Writes `state` whatever is stored (a runner restoring a partition it now owns).
    /// The default reads the stored version and compare-and-sets over it.
    async fn put(&self, state: OrderState) -> Result<(), Error> {
        loop {
            let expected = self.get(state.id).await?.map_or(0, |s| s.version);
            match self.compare_and_set(expected, state.clone()).await {
                Err(Error::Conflict { .. }) => continue,
                other => return other,
            }
        }
    }

    /// Drops `ids` from a store that caches states of the partitions its runner owns (a
    /// partition was revoked, or finished orders passed their retention). A durable store
    /// shared by every runner keeps them: the default does nothing.
    async fn evict(&self, _ids: &[OrderId]) -> Result<(), Error> {
        Ok(())
    }
}

#[async_trait]
impl<S: OrderStore + ?Sized> OrderStore for Arc<S> {
    async fn get(&self, id: OrderId) -> Result<Option<OrderState>, Error> {
        (**self).get(id).await
    }
    async fn compare_and_set(&self, expected_version: u64, state: OrderState) -> Result<(), Error> {
        (**self).compare_and_set(expected_version, state).await
    }
    async fn list(&self, query: ListQuery) -> Result<Vec<OrderState>, Error> {
        (**self).list(query).await
    }
    async fn get_many(&self, ids: &[OrderId]) -> Result<Vec<Option<OrderState>>, Error> {
        (**self).get_many(ids).await
    }
    async fn compare_and_set_many(&self, writes: Vec<(u64, OrderState)>) -> Result<(), Error> {
        (**self).compare_and_set_many(writes).await
    }
    async fn put(&self, state: OrderState) -> Result<(), Error> {
        (**self).put(state).await
    }
    async fn evict(&self, ids: &[OrderId]) -> Result<(), Error> {
        (**self).evict(ids).await
    }
}
