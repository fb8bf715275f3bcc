//! Index settings and mappings, created before the sink's first write.

use serde_json::{json, Value};

fn keyword() -> Value {
    json!({ "type": "keyword" })
}

fn long() -> Value {
    json!({ "type": "long" })
}

fn date() -> Value {
    json!({ "type": "date", "format": "epoch_millis" })
}

/// Keyword fields of the purchase that analyses group by.
fn purchase_properties() -> Value {
    json!({
        "product": keyword(),
        "price": keyword(),
        "payment_gateway": keyword(),
        "card_brand": keyword(),
        "bank": keyword(),
        "region": keyword(),
        "shipping_address": { "type": "text" },
        "customer_email": keyword(),
        "quantity": { "type": "integer" },
        "category": keyword(),
    })
}

fn index(properties: Value) -> Value {
    json!({
        "settings": { "number_of_shards": 1 },
        "mappings": { "properties": properties },
    })
}

/// One document per state change, id `{order_id}:{version}`.
pub(crate) fn transitions() -> Value {
    index(json!({
        "order_id": keyword(),
        "event_id": keyword(),
        "version": long(),
        "from": keyword(),
        "to": keyword(),
        "event": keyword(),
        "at": date(),
        "at_us": long(),
        "placed_at": date(),
        "placed_at_us": long(),
        "in_previous_state_us": long(),
        "since_placed_us": long(),
        "terminal": { "type": "boolean" },
        "reason": { "type": "text" },
        "actor": keyword(),
        "price_cents": long(),
        "purchase": { "properties": purchase_properties() },
    }))
}

/// One document per order (id `{order_id}`, external version = order version).
pub(crate) fn orders() -> Value {
    index(json!({
        "order_id": keyword(),
        "status": keyword(),
        "version": long(),
        "last_event": keyword(),
        "updated_at": date(),
        "placed_at": date(),
        "terminal": { "type": "boolean" },
        "reason": { "type": "text" },
        "product": keyword(),
        "category": keyword(),
        "price_cents": long(),
        "quantity": { "type": "integer" },
        "payment_gateway": keyword(),
        "card_brand": keyword(),
        "bank": keyword(),
        "region": keyword(),
    }))
}

fn summary() -> Value {
    json!({ "properties": {
        "count": long(),
        "mean_us": { "type": "double" },
        "p50_us": long(),
        "p90_us": long(),
        "p99_us": long(),
        "max_us": long(),
    }})
}

/// One document per metrics window, id `{window_start_us}-{window_end_us}`.
pub(crate) fn metrics() -> Value {
    index(json!({
        "window_start": date(),
        "window_end": date(),
        "elapsed_secs": { "type": "double" },
        "orders_placed": long(),
        "transitions": long(),
        "dead_lettered": long(),
        "duplicates": long(),
        "transitions_per_sec": { "type": "double" },
        "orders_finished_per_sec": { "type": "double" },
        "orders_finished": { "properties": { "state": keyword(), "count": long() } },
        "per_transition": { "properties": {
            "from": keyword(),
            "to": keyword(),
            "latency": summary(),
        }},
        "end_to_end": summary(),
        "processing": summary(),
    }))
}

/// One document per dead letter, id = the command's event id.
pub(crate) fn dead_letters() -> Value {
    index(json!({
        "order_id": keyword(),
        "event_id": keyword(),
        "reason": { "type": "text" },
        "partition": { "type": "integer" },
        "offset": long(),
        "command": { "type": "object", "enabled": false },
    }))
}
