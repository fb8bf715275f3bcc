//! [`PostgresStore`]: the `OrderStore` and the `StateLog` over one table.

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use deadpool_postgres::{Object, Pool, PoolError};
use order_fsm::{
    Error, Lifecycle, ListQuery, OrderId, OrderState, OrderStore, StateChange, StateLog,
};
use uuid::Uuid;

use crate::row::{self, Batch, COLUMNS, INPUT};
use crate::schema::MIGRATIONS;
use crate::PostgresError;

/// Compare-and-set of a batch in one statement: creates (expected 0) insert unless the
/// order exists, updates apply only where the stored version is the expected one (checked
/// by PostgreSQL on the locked row). Returns the writes that did not happen, with the
/// version the statement saw.
const COMPARE_AND_SET: &str = "WITH input AS (SELECT * FROM {INPUT}),
created AS (
    INSERT INTO order_fsm_orders (order_id, version, status, placed_by, created_at, updated_at,
                                  purchase, history, rejected, placed_by_actor)
    SELECT order_id, version, status, placed_by, created_at, updated_at, purchase, history,
           rejected, placed_by_actor
    FROM input WHERE expected = 0
    ON CONFLICT (order_id) DO NOTHING
    RETURNING order_id
),
updated AS (
    UPDATE order_fsm_orders o
    SET version = i.version, status = i.status, placed_by = i.placed_by,
        created_at = i.created_at, updated_at = i.updated_at, purchase = i.purchase,
        history = i.history, rejected = i.rejected, placed_by_actor = i.placed_by_actor
    FROM input i
    WHERE o.order_id = i.order_id AND i.expected > 0 AND o.version = i.expected
    RETURNING o.order_id
),
written AS (SELECT order_id FROM created UNION ALL SELECT order_id FROM updated)
SELECT i.order_id, i.expected, o.version
FROM input i
LEFT JOIN order_fsm_orders o ON o.order_id = i.order_id
WHERE i.order_id NOT IN (SELECT order_id FROM written)";

/// A state-log append: the owner's write wins unless the row already holds a newer version
/// (a stale writer can never move an order back).
const APPEND: &str = "INSERT INTO order_fsm_orders (order_id, version, status, placed_by,
    created_at, updated_at, purchase, history, rejected, source, source_partition,
    published_up_to, placed_by_actor)
SELECT order_id, version, status, placed_by, created_at, updated_at, purchase, history,
       rejected, $14, source_partition, published_up_to, placed_by_actor
FROM {INPUT}
ON CONFLICT (order_id) DO UPDATE
SET version = EXCLUDED.version, status = EXCLUDED.status, placed_by = EXCLUDED.placed_by,
    created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at,
    purchase = EXCLUDED.purchase, history = EXCLUDED.history, rejected = EXCLUDED.rejected,
    placed_by_actor = EXCLUDED.placed_by_actor, source = EXCLUDED.source, source_partition = EXCLUDED.source_partition,
    published_up_to = GREATEST(order_fsm_orders.published_up_to, EXCLUDED.published_up_to)
WHERE order_fsm_orders.version <= EXCLUDED.version";

/// Orders in PostgreSQL, one row each (see the crate docs for the schema).
///
/// - As an [`OrderStore`] it is durable and shared: every runner and the intake read the
///   same rows; compare-and-set is done by the database, a batch in one round trip
///   ([`OrderStore::compare_and_set_many`]).
/// - As a [`StateLog`] it keeps each order's partition: a runner appends a batch's new
///   states in one round trip and a partition's new owner restores its live orders with one
///   indexed query, however long the history behind them.
///
/// Cloning is cheap (a pool handle).
#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
    lifecycle: Arc<Lifecycle>,
    target: Arc<str>,
    source: Arc<str>,
    get_many_sql: Arc<str>,
    compare_and_set_sql: Arc<str>,
    append_sql: Arc<str>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("target", &self.target)
            .field("lifecycle", &self.lifecycle.name())
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    pub(crate) fn new(pool: Pool, lifecycle: Arc<Lifecycle>, target: String) -> Self {
        Self {
            pool,
            lifecycle,
            target: target.into(),
            source: Arc::from(""),
            get_many_sql: format!(
                "SELECT {COLUMNS} FROM order_fsm_orders WHERE order_id = ANY($1)"
            )
            .into(),
            compare_and_set_sql: COMPARE_AND_SET.replace("{INPUT}", INPUT).into(),
            append_sql: APPEND.replace("{INPUT}", INPUT).into(),
        }
    }

    /// The same store, its state-log role scoped to `source` (the commands topic its runner
    /// consumes): partitions of different sources sharing one database never mix in
    /// restores. Default: the empty name.
    #[must_use]
    pub fn with_source(mut self, source: impl Into<String>) -> Self {
        self.source = Arc::from(source.into());
        self
    }

    /// The source the state-log role is scoped to.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// `user@host:port/database` (never the password).
    pub fn target(&self) -> &str {
        &self.target
    }

    /// The schema migrations this crate ships, `(version, name)`, oldest first.
    pub fn migrations() -> impl Iterator<Item = (i32, &'static str)> {
        MIGRATIONS.iter().map(|&(version, name, _)| (version, name))
    }

    /// The lifecycle whose state and event names the rows hold.
    pub fn lifecycle(&self) -> &Arc<Lifecycle> {
        &self.lifecycle
    }

    pub(crate) async fn connection(&self) -> Result<Object, PostgresError> {
        self.pool.get().await.map_err(|e| match e {
            PoolError::Backend(source) if source.as_db_error().is_some() => PostgresError::Query {
                operation: "connect",
                source,
            },
            other => PostgresError::Unreachable {
                target: self.target.to_string(),
                source: Box::new(other),
            },
        })
    }

    /// Runs one statement on a pooled connection (prepared once per connection).
    async fn query(
        &self,
        operation: &'static str,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, PostgresError> {
        let client = self.connection().await?;
        let failed = |source| PostgresError::Query { operation, source };
        let statement = client.prepare_cached(sql).await.map_err(failed)?;
        client.query(&statement, params).await.map_err(failed)
    }

    fn decode(&self, row: &tokio_postgres::Row, partition: i32) -> Result<StateChange, Error> {
        row::decode(&self.lifecycle, row, partition).map_err(Error::from)
    }
}

fn uuid(id: OrderId) -> Uuid {
    Uuid::from_u128(id.as_u128())
}

#[async_trait]
impl OrderStore for PostgresStore {
    async fn get(&self, id: OrderId) -> Result<Option<OrderState>, Error> {
        Ok(self.get_many(&[id]).await?.pop().flatten())
    }

    /// One query for all of `ids`.
    async fn get_many(&self, ids: &[OrderId]) -> Result<Vec<Option<OrderState>>, Error> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let wanted: Vec<Uuid> = ids.iter().copied().map(uuid).collect();
        let rows = self.query("get", &self.get_many_sql, &[&wanted]).await?;
        let mut found = std::collections::HashMap::with_capacity(rows.len());
        for row in &rows {
            let state = self.decode(row, 0)?.state;
            found.insert(state.id, state);
        }
        Ok(ids.iter().map(|id| found.get(id).cloned()).collect())
    }

    async fn compare_and_set(&self, expected_version: u64, state: OrderState) -> Result<(), Error> {
        self.compare_and_set_many(vec![(expected_version, state)])
            .await
    }

    async fn compare_and_set_many(&self, writes: Vec<(u64, OrderState)>) -> Result<(), Error> {
        if writes.is_empty() {
            return Ok(());
        }
        let mut ids = HashSet::with_capacity(writes.len());
        if !writes.iter().all(|(_, s)| ids.insert(s.id)) {
            return Err(Error::backend(
                "postgres",
                "compare_and_set_many: an order appears twice in one batch",
            ));
        }
        let mut batch = Batch::with_capacity(writes.len());
        for (expected, state) in &writes {
            batch.push(&self.lifecycle, state, *expected, None, 0);
        }
        let skipped = self
            .query(
                "compare-and-set",
                &self.compare_and_set_sql,
                &batch.params(),
            )
            .await?;
        match skipped.first() {
            None => Ok(()),
            Some(row) => {
                let id: Uuid = row.get(0);
                let expected: i64 = row.get(1);
                let found: Option<i64> = row.get(2);
                Err(Error::Conflict {
                    order_id: OrderId::from_u128(id.as_u128()),
                    expected: expected as u64,
                    actual: found.map(|v| v as u64),
                })
            }
        }
    }

    async fn list(&self, query: ListQuery) -> Result<Vec<OrderState>, Error> {
        let status = query.status.map(|s| self.lifecycle.state_name(s));
        let after = query.after.map(uuid);
        let limit = row::to_i64(query.limit as u64);
        let filter = match (status.is_some(), after.is_some()) {
            (true, true) => "WHERE status = $1 AND order_id > $2",
            (true, false) => "WHERE status = $1 AND $2::uuid IS NULL",
            (false, true) => "WHERE $1::text IS NULL AND order_id > $2",
            (false, false) => "WHERE $1::text IS NULL AND $2::uuid IS NULL",
        };
        let sql =
            format!("SELECT {COLUMNS} FROM order_fsm_orders {filter} ORDER BY order_id LIMIT $3");
        let rows = self.query("list", &sql, &[&status, &after, &limit]).await?;
        rows.iter()
            .map(|row| self.decode(row, 0).map(|c| c.state))
            .collect()
    }

    /// One upsert, whatever is stored.
    async fn put(&self, state: OrderState) -> Result<(), Error> {
        let mut batch = Batch::with_capacity(1);
        batch.push(&self.lifecycle, &state, 0, None, 0);
        let sql = format!(
            "INSERT INTO order_fsm_orders (order_id, version, status, placed_by, created_at,
                 updated_at, purchase, history, rejected, placed_by_actor)
             SELECT order_id, version, status, placed_by, created_at, updated_at, purchase,
                 history, rejected, placed_by_actor FROM {INPUT}
             ON CONFLICT (order_id) DO UPDATE
             SET version = EXCLUDED.version, status = EXCLUDED.status,
                 placed_by = EXCLUDED.placed_by, created_at = EXCLUDED.created_at,
                 updated_at = EXCLUDED.updated_at, purchase = EXCLUDED.purchase,
                 history = EXCLUDED.history, rejected = EXCLUDED.rejected,
                 placed_by_actor = EXCLUDED.placed_by_actor"
        );
        self.query("put", &sql, &batch.params()).await?;
        Ok(())
    }
}

/// # Contract notes
/// Appends are one statement per call; a row never goes back to an older version. `forget`
/// keeps the row (it stays readable as an order) and only leaves it out of restores.
/// Checkpoint marks are not kept: after a crash, a restore republishes the records of each
/// live order's last appended change; after a clean hand-over ([`StateLog::release`]) it
/// republishes nothing.
#[async_trait]
impl StateLog for PostgresStore {
    async fn append(&self, changes: &[StateChange]) -> Result<(), Error> {
        if changes.is_empty() {
            return Ok(());
        }
        let mut batch = Batch::with_capacity(changes.len());
        for change in changes {
            batch.push(
                &self.lifecycle,
                &change.state,
                0,
                Some(change.partition),
                change.published_up_to,
            );
        }
        let source: &str = &self.source;
        let mut params = batch.params().to_vec();
        params.push(&source);
        self.query("append", &self.append_sql, &params).await?;
        Ok(())
    }

    async fn forget(&self, partition: i32, orders: &[OrderId]) -> Result<(), Error> {
        let ids: Vec<Uuid> = orders.iter().copied().map(uuid).collect();
        self.query(
            "forget",
            "UPDATE order_fsm_orders SET source_partition = NULL
             WHERE source = $3 AND source_partition = $1 AND order_id = ANY($2)",
            &[&partition, &ids, &&*self.source],
        )
        .await?;
        Ok(())
    }

    async fn restore(&self, partition: i32) -> Result<Vec<StateChange>, Error> {
        let sql = format!(
            "SELECT {COLUMNS} FROM order_fsm_orders WHERE source = $2 AND source_partition = $1
             ORDER BY updated_at"
        );
        let rows = self
            .query("restore", &sql, &[&partition, &&*self.source])
            .await?;
        rows.iter().map(|row| self.decode(row, partition)).collect()
    }

    async fn release(&self, partition: i32) -> Result<(), Error> {
        self.query(
            "release",
            "UPDATE order_fsm_orders SET published_up_to = version
             WHERE source = $2 AND source_partition = $1 AND published_up_to < version",
            &[&partition, &&*self.source],
        )
        .await?;
        Ok(())
    }
}
