//! The analyses the original systems made in Kibana, as typed queries.

use elasticsearch::http::Method;
use order_fsm::{OrderId, Timestamp, TransitionRecord};
use serde::Serialize;
use serde_json::{json, Value};

use crate::client::Client;
use crate::document::{Indices, TransitionDoc};
use crate::sink::indices_of;
use crate::ElasticError;

/// The percentiles every latency query asks for.
const PERCENTS: [f64; 3] = [50.0, 90.0, 99.0];
/// Most buckets of a `terms` aggregation.
const TERMS_SIZE: usize = 1000;

/// A latency distribution in microseconds.
///
/// Count, average, minimum and maximum are exact; the percentiles come from the server's
/// `percentiles` aggregation, which Elasticsearch computes approximately (TDigest):
/// expect them within a rank or so of the exact value on small samples.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct LatencyStats {
    /// Number of samples.
    pub count: u64,
    /// Average.
    pub avg_us: f64,
    /// Smallest sample.
    pub min_us: f64,
    /// Largest sample.
    pub max_us: f64,
    /// Median.
    pub p50_us: f64,
    /// 90th percentile.
    pub p90_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
}

/// Time spent in `from` before moving to `to`, over every such state change.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TransitionLatencyStats {
    /// State before.
    pub from: String,
    /// State after.
    pub to: String,
    /// The distribution of `in_previous_state_micros`.
    pub latency: LatencyStats,
}

/// State changes in one minute.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ThroughputBucket {
    /// Start of the minute.
    pub minute_start: Timestamp,
    /// State changes in the minute (placements not included).
    pub transitions: u64,
    /// Of those, the ones that reached a terminal state.
    pub orders_finished: u64,
}

/// Number of documents with one value of a field.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TermCount {
    /// The value.
    pub key: String,
    /// How many orders have it.
    pub count: u64,
}

/// A field of the orders index to group orders by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum OrderField {
    /// Current state.
    Status,
    /// Issuing bank.
    Bank,
    /// Shipping region.
    Region,
    /// Card brand.
    CardBrand,
    /// Payment gateway.
    PaymentGateway,
    /// Product category.
    Category,
}

impl OrderField {
    fn name(self) -> &'static str {
        match self {
            Self::Status => "status",
            Self::Bank => "bank",
            Self::Region => "region",
            Self::CardBrand => "card_brand",
            Self::PaymentGateway => "payment_gateway",
            Self::Category => "category",
        }
    }
}

/// Typed queries over the indices a sink writes; from [`crate::ElasticSink::queries`] or
/// [`crate::ElasticBuilder::build_queries`].
///
/// Queries see what the server has made searchable: call [`Queries::refresh`] first when
/// they must see documents indexed just before (Elasticsearch refreshes every second).
#[derive(Clone, Debug)]
pub struct Queries {
    client: Client,
    indices: Indices,
}

fn f64_at(v: &Value, key: &str) -> f64 {
    v.get(key).and_then(Value::as_f64).unwrap_or(0.0)
}

fn u64_at(v: &Value, key: &str) -> u64 {
    v.get(key).and_then(Value::as_u64).unwrap_or(0)
}

fn latency_aggs(field: &str) -> Value {
    json!({
        "stats": { "stats": { "field": field } },
        "percentiles": { "percentiles": { "field": field, "percents": PERCENTS } },
    })
}

fn latency_of(bucket: &Value) -> LatencyStats {
    let stats = &bucket["stats"];
    let values = &bucket["percentiles"]["values"];
    let pct = |p: f64| {
        values
            .get(format!("{p:.1}"))
            .or_else(|| values.get(p.to_string()))
            .and_then(Value::as_f64)
            .unwrap_or(0.0)
    };
    LatencyStats {
        count: u64_at(stats, "count"),
        avg_us: f64_at(stats, "avg"),
        min_us: f64_at(stats, "min"),
        max_us: f64_at(stats, "max"),
        p50_us: pct(50.0),
        p90_us: pct(90.0),
        p99_us: pct(99.0),
    }
}

fn buckets<'a>(aggs: &'a Value, name: &str) -> Result<&'a Vec<Value>, ElasticError> {
    aggs[name]["buckets"].as_array().ok_or_else(|| {
        ElasticError::decode("search", format!("aggregation `{name}` has no buckets"))
    })
}

fn key_of(bucket: &Value) -> String {
    match &bucket["key"] {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl Queries {
    pub(crate) fn new(client: Client) -> Self {
        let indices = indices_of(&client.config);
        Self { client, indices }
    }

    async fn search(&self, index: &str, body: Value) -> Result<Value, ElasticError> {
        self.client
            .json(
                Method::Post,
                &format!("/{index}/_search"),
                Some(&body),
                "search",
            )
            .await
    }

    async fn aggregate(
        &self,
        index: &str,
        query: Value,
        aggs: Value,
    ) -> Result<Value, ElasticError> {
        let reply = self
            .search(index, json!({ "size": 0, "query": query, "aggs": aggs }))
            .await?;
        Ok(reply["aggregations"].clone())
    }

    /// Makes everything indexed so far searchable.
    ///
    /// # Errors
    /// [`ElasticError::Unreachable`] or [`ElasticError::Http`].
    pub async fn refresh(&self) -> Result<(), ElasticError> {
        let i = &self.indices;
        let path = format!(
            "/{},{},{},{}/_refresh",
            i.orders, i.transitions, i.metrics, i.dead_letters
        );
        self.client
            .json(Method::Post, &path, None, "refresh")
            .await?;
        Ok(())
    }

    /// Number of documents in the transitions index.
    ///
    /// # Errors
    /// As [`Queries::refresh`].
    pub async fn count_transitions(&self) -> Result<u64, ElasticError> {
        let path = format!("/{}/_count", self.indices.transitions);
        let reply = self.client.json(Method::Get, &path, None, "count").await?;
        reply["count"]
            .as_u64()
            .ok_or_else(|| ElasticError::decode("count", "no `count`"))
    }

    /// The transition records of one order, in version order.
    ///
    /// # Errors
    /// As [`Queries::refresh`], or [`ElasticError::Decode`] for a document this crate did
    /// not write.
    pub async fn transitions_of(
        &self,
        order_id: OrderId,
    ) -> Result<Vec<TransitionRecord>, ElasticError> {
        let body = json!({
            "size": 10_000,
            "query": { "term": { "order_id": order_id.to_string() } },
            "sort": [{ "version": "asc" }],
        });
        let reply = self.search(&self.indices.transitions, body).await?;
        let hits = reply["hits"]["hits"]
            .as_array()
            .ok_or_else(|| ElasticError::decode("search", "no hits"))?;
        hits.iter()
            .map(|hit| {
                serde_json::from_value::<TransitionDoc>(hit["_source"].clone())
                    .map(TransitionRecord::from)
                    .map_err(|e| ElasticError::decode("search", e))
            })
            .collect()
    }

    /// Time spent in each state before each kind of state change (placements excluded),
    /// sorted by `(from, to)`.
    ///
    /// # Errors
    /// As [`Queries::refresh`].
    pub async fn latency_per_transition(
        &self,
    ) -> Result<Vec<TransitionLatencyStats>, ElasticError> {
        let aggs = json!({ "from": {
            "terms": { "field": "from", "size": TERMS_SIZE },
            "aggs": { "to": {
                "terms": { "field": "to", "size": TERMS_SIZE },
                "aggs": latency_aggs("in_previous_state_us"),
            }},
        }});
        let query = json!({ "exists": { "field": "from" } });
        let aggs = self
            .aggregate(&self.indices.transitions, query, aggs)
            .await?;
        let mut out = Vec::new();
        for from in buckets(&aggs, "from")? {
            for to in buckets(from, "to")? {
                out.push(TransitionLatencyStats {
                    from: key_of(from),
                    to: key_of(to),
                    latency: latency_of(to),
                });
            }
        }
        out.sort_by(|a, b| (&a.from, &a.to).cmp(&(&b.from, &b.to)));
        Ok(out)
    }

    /// Time from placement to reaching `state` (e.g. `"completed"`), over the orders that
    /// reached it.
    ///
    /// # Errors
    /// As [`Queries::refresh`].
    pub async fn end_to_end(&self, state: &str) -> Result<LatencyStats, ElasticError> {
        let query = json!({ "term": { "to": state } });
        let aggs = self
            .aggregate(
                &self.indices.transitions,
                query,
                latency_aggs("since_placed_us"),
            )
            .await?;
        Ok(latency_of(&aggs))
    }

    /// State changes per minute (placements excluded), oldest first; minutes without any
    /// are left out.
    ///
    /// # Errors
    /// As [`Queries::refresh`].
    pub async fn throughput_per_minute(&self) -> Result<Vec<ThroughputBucket>, ElasticError> {
        let aggs = json!({ "minutes": {
            "date_histogram": { "field": "at", "fixed_interval": "1m", "min_doc_count": 1 },
            "aggs": { "finished": { "filter": { "term": { "terminal": true } } } },
        }});
        let query = json!({ "exists": { "field": "from" } });
        let aggs = self
            .aggregate(&self.indices.transitions, query, aggs)
            .await?;
        let mut out: Vec<ThroughputBucket> = buckets(&aggs, "minutes")?
            .iter()
            .filter(|b| u64_at(b, "doc_count") > 0)
            .map(|b| ThroughputBucket {
                minute_start: Timestamp::from_micros(u64_at(b, "key").saturating_mul(1_000)),
                transitions: u64_at(b, "doc_count"),
                orders_finished: u64_at(&b["finished"], "doc_count"),
            })
            .collect();
        out.sort_by_key(|b| b.minute_start);
        Ok(out)
    }

    /// Orders per value of `field` (current state, bank, ...), most frequent first (ties by
    /// value).
    ///
    /// # Errors
    /// As [`Queries::refresh`].
    pub async fn orders_per(&self, field: OrderField) -> Result<Vec<TermCount>, ElasticError> {
        let aggs = json!({ "values": { "terms": { "field": field.name(), "size": TERMS_SIZE } } });
        let aggs = self
            .aggregate(&self.indices.orders, json!({ "match_all": {} }), aggs)
            .await?;
        let mut out: Vec<TermCount> = buckets(&aggs, "values")?
            .iter()
            .map(|b| TermCount {
                key: key_of(b),
                count: u64_at(b, "doc_count"),
            })
            .collect();
        out.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.key.cmp(&b.key)));
        Ok(out)
    }

    /// Orders per current state.
    ///
    /// # Errors
    /// As [`Queries::refresh`].
    pub async fn orders_per_status(&self) -> Result<Vec<TermCount>, ElasticError> {
        self.orders_per(OrderField::Status).await
    }

    /// Orders per issuing bank.
    ///
    /// # Errors
    /// As [`Queries::refresh`].
    pub async fn orders_per_bank(&self) -> Result<Vec<TermCount>, ElasticError> {
        self.orders_per(OrderField::Bank).await
    }

    /// Orders per shipping region.
    ///
    /// # Errors
    /// As [`Queries::refresh`].
    pub async fn orders_per_region(&self) -> Result<Vec<TermCount>, ElasticError> {
        self.orders_per(OrderField::Region).await
    }
}
