//! The runner's side of partition ownership: adopting and releasing partitions,
//! checkpoints, refreshes of lagging orders, and the resume of a shared store.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::worker::Work;
use super::Runner;
use crate::{Error, StateChange};

/// How often a runner records in its state log what was published.
pub(super) const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);

/// A checkpoint on its way through the workers' queues.
pub(super) struct Checkpoint {
    pub(super) marks: Vec<(i32, u64)>,
    pub(super) passed: futures_util::future::JoinAll<oneshot::Receiver<()>>,
}

impl Runner {
    /// Takes the state log's marks of the owned partitions and queues a checkpoint behind
    /// every worker's work (waiting for room like a command would).
    pub(super) async fn start_checkpoint(
        &self,
        owned: &HashSet<i32>,
        senders: &[mpsc::Sender<Work>],
    ) -> Option<Checkpoint> {
        let log = self.shared.state_log.as_ref()?;
        let marks: Vec<(i32, u64)> = owned
            .iter()
            .filter_map(|&p| log.mark(p).map(|mark| (p, mark)))
            .collect();
        if marks.is_empty() {
            return None;
        }
        let mut answers = Vec::with_capacity(senders.len());
        for sender in senders {
            let (done, answer) = oneshot::channel();
            sender.send(Work::Checkpoint(done)).await.ok()?;
            answers.push(answer);
        }
        Some(Checkpoint {
            marks,
            passed: futures_util::future::join_all(answers),
        })
    }

    /// Every worker passed a checkpoint: what was appended below its marks is published.
    /// Then the orders whose latest change lags far behind are appended again by their
    /// workers, so restores keep reading about as much as the live orders.
    pub(super) async fn checkpointed(
        &self,
        marks: &[(i32, u64)],
        owned: &HashSet<i32>,
        senders: &[mpsc::Sender<Work>],
    ) {
        let Some(log) = &self.shared.state_log else {
            return;
        };
        for &(partition, mark) in marks {
            // A partition revoked meanwhile belongs to another writer now.
            if owned.contains(&partition) {
                match log.published_below(partition, mark).await {
                    Ok(()) => tracing::trace!(partition, mark, "checkpoint recorded"),
                    Err(e) => tracing::debug!(partition, error = %e, "checkpoint not recorded"),
                }
                let lagging = log.lagging(partition);
                if lagging.is_empty() {
                    continue;
                }
                let mut shares: HashMap<usize, Vec<crate::OrderId>> = HashMap::new();
                for id in lagging {
                    let shard = (id.shard_key() % self.workers as u64) as usize;
                    shares.entry(shard).or_default().push(id);
                }
                for (shard, orders) in shares {
                    let refresh = Work::Refresh { partition, orders };
                    if senders[shard].send(refresh).await.is_err() {
                        return;
                    }
                }
            }
        }
    }

    /// Takes over `partitions`: restores their orders from the state log (if any) and hands
    /// each worker its share, ahead of any command of them.
    pub(super) async fn adopt(
        &self,
        partitions: &[i32],
        senders: &[mpsc::Sender<Work>],
    ) -> Result<(), Error> {
        let restores = partitions.iter().map(|&partition| async move {
            let changes = match &self.shared.state_log {
                Some(log) => {
                    let started = Instant::now();
                    let changes = self.shared.retry.run(|| log.restore(partition)).await?;
                    tracing::info!(
                        partition,
                        orders = changes.len(),
                        millis = started.elapsed().as_millis() as u64,
                        "restored partition"
                    );
                    changes
                }
                None => Vec::new(),
            };
            Ok::<_, Error>((partition, changes))
        });
        for restored in futures_util::future::join_all(restores).await {
            let (partition, changes) = restored?;
            let mut shares: HashMap<usize, Vec<StateChange>> = HashMap::new();
            for change in changes {
                let shard = (change.state.id.shard_key() % self.workers as u64) as usize;
                shares.entry(shard).or_default().push(change);
            }
            for (shard, sender) in senders.iter().enumerate() {
                let changes = shares.remove(&shard).unwrap_or_default();
                sender
                    .send(Work::Adopt { partition, changes })
                    .await
                    .map_err(|_| Error::Closed("runner worker"))?;
            }
        }
        Ok(())
    }

    /// Gives up `partitions`: every worker finishes what it has of them, then drops their
    /// orders and timers.
    pub(super) async fn release(
        &self,
        partitions: &[i32],
        senders: &[mpsc::Sender<Work>],
    ) -> Result<(), Error> {
        let mut answers = Vec::with_capacity(senders.len());
        for sender in senders {
            let (done, answer) = oneshot::channel();
            sender
                .send(Work::Revoke {
                    partitions: partitions.to_vec(),
                    done,
                })
                .await
                .map_err(|_| Error::Closed("runner worker"))?;
            answers.push(answer);
        }
        for answer in answers {
            answer.await.map_err(|_| Error::Closed("runner worker"))?;
        }
        if let Some(log) = &self.shared.state_log {
            for &partition in partitions {
                // Only spares the next owner republishing: a failure costs duplicates.
                if let Err(e) = log.release(partition).await {
                    tracing::warn!(partition, error = %e, "state log did not record the hand-over");
                }
            }
        }
        tracing::info!(?partitions, "released partitions");
        Ok(())
    }

    /// Queues an advance for every stored order waiting in a state with an automatic advance.
    pub(super) async fn resume(&self, senders: &[mpsc::Sender<Work>]) -> Result<(), Error> {
        let lifecycle = Arc::clone(self.shared.engine.lifecycle());
        let mut resumed = 0u64;
        for status in lifecycle
            .states()
            .filter(|s| lifecycle.advance_event(*s).is_some())
        {
            let mut after = None;
            loop {
                let query = crate::ListQuery {
                    status: Some(status),
                    after,
                    limit: 1_000,
                };
                let page = self
                    .shared
                    .retry
                    .run(|| self.shared.store.list(query))
                    .await?;
                let Some(last) = page.last() else { break };
                after = Some(last.id);
                for order in page {
                    let shard = (order.id.shard_key() % self.workers as u64) as usize;
                    let work = Work::Advance {
                        order_id: order.id,
                        version: order.version,
                        owner: None,
                    };
                    senders[shard]
                        .send(work)
                        .await
                        .map_err(|_| Error::Closed("runner worker"))?;
                    resumed += 1;
                }
            }
        }
        tracing::info!(resumed, "resumed orders waiting for an automatic advance");
        Ok(())
    }
}
