//! Orders as rows: the columns of `order_fsm_orders` and back.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use order_fsm::{
    EventId, HistoryRecord, Lifecycle, OrderId, OrderState, Purchase, StateChange, StateRecord,
    Timestamp,
};
use tokio_postgres::types::{Json, ToSql};
use tokio_postgres::Row;
use uuid::Uuid;

use crate::PostgresError;

/// The columns every read selects, in this order.
pub(crate) const COLUMNS: &str = "order_id, version, status, placed_by, created_at, updated_at, \
     purchase, history, rejected, published_up_to, placed_by_actor";

/// The `UNNEST` of the parameters [`Batch::params`] binds, as a row source named `input`
/// with the columns of the table plus `expected`, `source_partition` and `published_up_to`.
pub(crate) const INPUT: &str = "UNNEST($1::uuid[], $2::bigint[], $3::bigint[], $4::text[], \
     $5::uuid[], $6::timestamptz[], $7::timestamptz[], $8::jsonb[], $9::jsonb[], $10::jsonb[], \
     $11::integer[], $12::bigint[], $13::text[]) AS input(order_id, expected, version, status, \
     placed_by, created_at, updated_at, purchase, history, rejected, source_partition, \
     published_up_to, placed_by_actor)";

/// Many orders as parallel arrays, one per column: a whole runner batch travels as one
/// statement with thirteen parameters, whatever its size.
#[derive(Default)]
pub(crate) struct Batch {
    order_id: Vec<Uuid>,
    expected: Vec<i64>,
    version: Vec<i64>,
    status: Vec<&'static str>,
    placed_by: Vec<Uuid>,
    created_at: Vec<SystemTime>,
    updated_at: Vec<SystemTime>,
    purchase: Vec<Json<Arc<Purchase>>>,
    history: Vec<Json<Vec<HistoryRecord>>>,
    rejected: Vec<Json<Vec<EventId>>>,
    source_partition: Vec<Option<i32>>,
    published_up_to: Vec<i64>,
    placed_by_actor: Vec<Option<String>>,
}

impl Batch {
    pub(crate) fn with_capacity(n: usize) -> Self {
        Self {
            order_id: Vec::with_capacity(n),
            expected: Vec::with_capacity(n),
            version: Vec::with_capacity(n),
            status: Vec::with_capacity(n),
            placed_by: Vec::with_capacity(n),
            created_at: Vec::with_capacity(n),
            updated_at: Vec::with_capacity(n),
            purchase: Vec::with_capacity(n),
            history: Vec::with_capacity(n),
            rejected: Vec::with_capacity(n),
            source_partition: Vec::with_capacity(n),
            published_up_to: Vec::with_capacity(n),
            placed_by_actor: Vec::with_capacity(n),
        }
    }

    /// Adds one order: the version a compare-and-set expects (0: absent), the partition and
    /// published version of a state-log append.
    pub(crate) fn push(
        &mut self,
        lifecycle: &Lifecycle,
        state: &OrderState,
        expected: u64,
        source_partition: Option<i32>,
        published_up_to: u64,
    ) {
        let record = StateRecord::of_state(lifecycle, state, published_up_to);
        self.order_id.push(Uuid::from_u128(state.id.as_u128()));
        self.expected.push(to_i64(expected));
        self.version.push(to_i64(state.version));
        self.status.push(lifecycle.state_name(state.status));
        self.placed_by
            .push(Uuid::from_u128(state.placed_by.as_u128()));
        self.created_at.push(to_time(state.created_at));
        self.updated_at.push(to_time(state.updated_at));
        self.purchase.push(Json(record.purchase));
        self.history.push(Json(record.history));
        self.rejected.push(Json(record.rejected));
        self.source_partition.push(source_partition);
        self.published_up_to.push(to_i64(published_up_to));
        self.placed_by_actor.push(state.placed_by_actor.clone());
    }

    /// The thirteen parameters of [`INPUT`].
    pub(crate) fn params(&self) -> [&(dyn ToSql + Sync); 13] {
        [
            &self.order_id,
            &self.expected,
            &self.version,
            &self.status,
            &self.placed_by,
            &self.created_at,
            &self.updated_at,
            &self.purchase,
            &self.history,
            &self.rejected,
            &self.source_partition,
            &self.published_up_to,
            &self.placed_by_actor,
        ]
    }
}

/// Reads a row selected with [`COLUMNS`] back as the change a runner appended (or, for
/// rows written by compare-and-set, as a change of `partition` published up to 0).
pub(crate) fn decode(
    lifecycle: &Lifecycle,
    row: &Row,
    partition: i32,
) -> Result<StateChange, PostgresError> {
    let order_id: Uuid = row.get(0);
    let fail = |reason: String| PostgresError::Decode {
        order_id: order_id.to_string(),
        reason,
    };
    let version: i64 = row.get(1);
    let status: String = row.get(2);
    let placed_by: Uuid = row.get(3);
    let Json(purchase): Json<Purchase> = row.try_get(6).map_err(|e| fail(e.to_string()))?;
    let Json(history): Json<Vec<HistoryRecord>> =
        row.try_get(7).map_err(|e| fail(e.to_string()))?;
    let Json(rejected): Json<Vec<EventId>> = row.try_get(8).map_err(|e| fail(e.to_string()))?;
    let published_up_to: i64 = row.get(9);
    let mut record = StateRecord::new(
        OrderId::from_u128(order_id.as_u128()),
        u64::try_from(version).map_err(|_| fail(format!("version {version}")))?,
        status,
        EventId::from_u128(placed_by.as_u128()),
        from_time(row.get(4)),
        Arc::new(purchase),
    );
    record.updated_at = from_time(row.get(5));
    record.history = history;
    record.rejected = rejected;
    record.published_up_to = u64::try_from(published_up_to).unwrap_or_default();
    record.placed_by_actor = row.get(10);
    record
        .into_change(lifecycle, partition)
        .map_err(|e| fail(e.to_string()))
}

pub(crate) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn to_time(t: Timestamp) -> SystemTime {
    UNIX_EPOCH + Duration::from_micros(t.as_micros())
}

fn from_time(t: SystemTime) -> Timestamp {
    let micros = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_micros();
    Timestamp::from_micros(u64::try_from(micros).unwrap_or(u64::MAX))
}
