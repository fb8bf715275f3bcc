//! The sink: the core's transition, metrics and dead-letter traits over the batching task.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use order_fsm::{
    DeadLetter, DeadLetterSink, MetricsRecord, MetricsSink, Origin, TransitionRecord,
    TransitionSink,
};

use crate::batcher::{Batcher, Job};
use crate::bulk::Outcome;
use crate::client::Client;
use crate::config::ElasticConfig;
use crate::document::{self, Indices};
use crate::{mappings, ElasticBuilder, ElasticError, Queries};

/// Indexes transition records, metrics windows and dead letters into Elasticsearch.
///
/// Built by [`ElasticBuilder::build`], which creates the indices, or by
/// [`ElasticBuilder::build_lazily`], which creates them before the first write. Cheap to
/// clone (clones share one batching task); the task ends when the last clone is dropped.
///
/// # Contract
/// - **Durability**: [`TransitionSink::publish`] returns `Ok` only once every document of
///   the batch was acknowledged by the server (or, for the orders index, found superseded
///   by a newer version).
/// - **Idempotence**: transition documents have the id `{order_id}:{version}` and the order
///   document `{order_id}` is written with external versioning, so publishing a batch again
///   replaces documents and never duplicates them, and an older record never overwrites a
///   newer order state.
/// - **Batching**: publish calls from several workers are packed into shared `_bulk`
///   requests bounded by [`ElasticConfig::max_batch_docs`], [`ElasticConfig::max_batch_bytes`]
///   and [`ElasticConfig::flush_interval`]; at most [`ElasticConfig::max_in_flight`] requests
///   are in flight.
/// - **Errors**: whole-request failures (unreachable, 429, 5xx) and items refused with
///   429 / 503 are retried with [`ElasticConfig::retry`]; when that runs out the publish fails
///   with a retryable error ([`order_fsm::Error::Unavailable`]), so the runner does not
///   acknowledge and publishes again. Documents refused for good fail the publish with
///   [`ElasticError::Rejected`] naming the document (fatal), unless a dead-letter sink was
///   configured, which then receives them.
#[derive(Clone)]
pub struct ElasticSink {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    indices: Indices,
    /// Set once the indices exist.
    ready: tokio::sync::OnceCell<()>,
    batcher: Batcher,
    dead_letters: Option<Arc<dyn DeadLetterSink>>,
}

impl fmt::Debug for ElasticSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ElasticSink")
            .field("config", &self.inner.client.config)
            .field("dead_letters", &self.inner.dead_letters.is_some())
            .finish_non_exhaustive()
    }
}

pub(crate) fn indices_of(config: &ElasticConfig) -> Indices {
    Indices {
        transitions: config.transitions_index(),
        orders: config.orders_index(),
        metrics: config.metrics_index(),
        dead_letters: config.dead_letters_index(),
    }
}

impl ElasticBuilder {
    /// Connects, creates the indices that do not exist yet (with their mappings) and starts
    /// the batching task on the current Tokio runtime.
    ///
    /// # Errors
    /// [`ElasticError::Config`] for an invalid configuration, [`ElasticError::Unreachable`]
    /// when nothing answers at the URL, [`ElasticError::Http`] when the server refuses
    /// (e.g. 401 for bad credentials).
    pub async fn build(self) -> Result<ElasticSink, ElasticError> {
        let sink = self.build_lazily().await?;
        sink.inner.client.ping().await?;
        sink.ready().await?;
        Ok(sink)
    }

    /// Like [`ElasticBuilder::build`], but without contacting the server: the indices are
    /// created before the first write, and until the server answers every write fails with
    /// a retryable [`ElasticError::Unreachable`]. For a process that must start while
    /// Elasticsearch is down, e.g. a worker whose Elasticsearch follower waits for it.
    ///
    /// # Errors
    /// [`ElasticError::Config`] for an invalid configuration.
    pub async fn build_lazily(self) -> Result<ElasticSink, ElasticError> {
        let client = Client::new(self.config().clone())?;
        let indices = indices_of(&client.config);
        let batcher = Batcher::spawn(client.clone(), indices.clone());
        Ok(ElasticSink {
            inner: Arc::new(Inner {
                client,
                indices,
                ready: tokio::sync::OnceCell::new(),
                batcher,
                dead_letters: self.dead_letters,
            }),
        })
    }

    /// Connects for queries only (no index creation, no batching task).
    ///
    /// # Errors
    /// As [`ElasticBuilder::build`].
    pub async fn build_queries(self) -> Result<Queries, ElasticError> {
        let client = Client::new(self.config().clone())?;
        client.ping().await?;
        Ok(Queries::new(client))
    }
}

/// The first fatal error, else the first retryable one.
fn worst(outcomes: &mut [Outcome]) -> Option<ElasticError> {
    let mut retryable = None;
    for o in outcomes.iter_mut() {
        if let Outcome::Failed(e) = o {
            if !e.is_retryable() {
                return Some(e.clone());
            }
            retryable.get_or_insert_with(|| e.clone());
        }
    }
    retryable
}

impl ElasticSink {
    /// The configuration it was built with.
    pub fn config(&self) -> &ElasticConfig {
        &self.inner.client.config
    }

    /// Queries over the same indices.
    pub fn queries(&self) -> Queries {
        Queries::new(self.inner.client.clone())
    }

    /// Creates the indices that do not exist yet (with their mappings), once.
    async fn ready(&self) -> Result<(), ElasticError> {
        let Inner {
            client,
            indices,
            ready,
            ..
        } = &*self.inner;
        ready
            .get_or_try_init(|| async {
                for (index, body) in [
                    (&indices.orders, mappings::orders()),
                    (&indices.transitions, mappings::transitions()),
                    (&indices.metrics, mappings::metrics()),
                    (&indices.dead_letters, mappings::dead_letters()),
                ] {
                    client.ensure_index(index, &body).await?;
                }
                Ok::<_, ElasticError>(())
            })
            .await
            .map(|_| ())
    }

    /// Indexes `records`; see the type's contract.
    ///
    /// # Errors
    /// A retryable [`ElasticError`] when the server could not take them now, a fatal one
    /// when it refused them for good.
    pub async fn index_records(&self, records: &[TransitionRecord]) -> Result<(), ElasticError> {
        if records.is_empty() {
            return Ok(());
        }
        self.ready().await?;
        let ops = document::encode_records(&self.inner.indices, records)
            .map_err(|e| ElasticError::decode("encode", e))?;
        let (job, mut outcomes) = self.inner.batcher.submit(ops).await?;
        if let Some(e) = worst(&mut outcomes) {
            return Err(e);
        }
        let rejected = self.rejections(&job, outcomes);
        if rejected.is_empty() {
            return Ok(());
        }
        let Some(dead_letters) = &self.inner.dead_letters else {
            let more = rejected.len() - 1;
            let (_, (index, id, status, reason)) = rejected.into_iter().next().expect("not empty");
            return Err(ElasticError::Rejected {
                index,
                id,
                status,
                reason,
                more,
            });
        };
        for (slot, (index, id, status, reason)) in rejected {
            let letter = DeadLetter::new(
                document::command_of(&records[slot]),
                format!(
                    "elasticsearch rejected document `{id}` of index `{index}` (HTTP {status}): {reason}"
                ),
                Origin::default(),
            );
            tracing::warn!(%id, %index, status, %reason, "document rejected; dead-lettered");
            dead_letters
                .dead_letter(&letter)
                .await
                .map_err(|e| ElasticError::DeadLetter {
                    id: id.clone(),
                    source: Arc::new(e),
                })?;
        }
        Ok(())
    }

    /// Rejected operations by record slot (one per record): index, id, status, reason.
    fn rejections(
        &self,
        job: &Job,
        outcomes: Vec<Outcome>,
    ) -> BTreeMap<usize, (String, String, u16, String)> {
        let mut out = BTreeMap::new();
        for (op, outcome) in job.ops.iter().zip(outcomes) {
            if let Outcome::Rejected { status, reason } = outcome {
                out.entry(op.slot).or_insert_with(|| {
                    (
                        self.inner.indices.name(op.target).to_owned(),
                        op.id.clone(),
                        status,
                        reason,
                    )
                });
            }
        }
        out
    }

    async fn index_one(&self, op: document::Op) -> Result<(), ElasticError> {
        self.ready().await?;
        let (job, mut outcomes) = self.inner.batcher.submit(vec![op]).await?;
        if let Some(e) = worst(&mut outcomes) {
            return Err(e);
        }
        match outcomes.pop() {
            Some(Outcome::Rejected { status, reason }) => {
                let op = &job.ops[0];
                Err(ElasticError::Rejected {
                    index: self.inner.indices.name(op.target).to_owned(),
                    id: op.id.clone(),
                    status,
                    reason,
                    more: 0,
                })
            }
            _ => Ok(()),
        }
    }

    /// Indexes one metrics window (id `{window_start_us}-{window_end_us}`).
    ///
    /// # Errors
    /// As [`ElasticSink::index_records`].
    pub async fn index_metrics(&self, metrics: &MetricsRecord) -> Result<(), ElasticError> {
        let op = document::encode_metrics(&self.inner.indices, metrics)
            .map_err(|e| ElasticError::decode("encode", e))?;
        self.index_one(op).await
    }

    /// Indexes one dead letter (id: the command's event id).
    ///
    /// # Errors
    /// As [`ElasticSink::index_records`].
    pub async fn index_dead_letter(&self, letter: &DeadLetter) -> Result<(), ElasticError> {
        let op = document::encode_dead_letter(&self.inner.indices, letter)
            .map_err(|e| ElasticError::decode("encode", e))?;
        self.index_one(op).await
    }
}

#[async_trait]
impl TransitionSink for ElasticSink {
    async fn publish(&self, records: &[TransitionRecord]) -> Result<(), order_fsm::Error> {
        Ok(self.index_records(records).await?)
    }
}

#[async_trait]
impl MetricsSink for ElasticSink {
    async fn record(&self, metrics: &MetricsRecord) -> Result<(), order_fsm::Error> {
        Ok(self.index_metrics(metrics).await?)
    }
}

#[async_trait]
impl DeadLetterSink for ElasticSink {
    async fn dead_letter(&self, letter: &DeadLetter) -> Result<(), order_fsm::Error> {
        Ok(self.index_dead_letter(letter).await?)
    }
}
