-- One row per order: its latest state, readable with plain SQL.
-- Ids, status, version and timestamps are columns; what was bought and the audit history are
-- JSONB documents (a history entry is {event_id, event, to, at, reason}, oldest first; `at`
-- in microseconds since the epoch, as on the Kafka topics).
CREATE TABLE IF NOT EXISTS order_fsm_orders (
    order_id        uuid        PRIMARY KEY,
    version         bigint      NOT NULL CHECK (version >= 1),
    status          text        NOT NULL,
    placed_by       uuid        NOT NULL,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    purchase        jsonb       NOT NULL,
    history         jsonb       NOT NULL DEFAULT '[]',
    rejected        jsonb       NOT NULL DEFAULT '[]',
    -- The source (e.g. commands topic) and partition whose owner keeps the order live
    -- (state-log use); the partition is NULL once the order was forgotten by its runner
    -- (finished and past retention) or was never owned.
    source          text,
    source_partition integer,
    -- Transition records of versions up to this one were published (state-log use).
    published_up_to bigint      NOT NULL DEFAULT 0
);

-- Listing by status with keyset paging: WHERE status = $1 AND order_id > $2 ORDER BY order_id.
CREATE INDEX IF NOT EXISTS order_fsm_orders_status ON order_fsm_orders (status, order_id);

-- A partition's live orders, what a new owner restores, oldest change first: an order's dwell
-- timer is due at updated_at + the dwell of its state, so "due before T" is a range of this index.
CREATE INDEX IF NOT EXISTS order_fsm_orders_live
    ON order_fsm_orders (source, source_partition, updated_at)
    WHERE source_partition IS NOT NULL;
