//! The batching task: publish calls hand it jobs (encoded operations); it packs operations of
//! one or more jobs into `_bulk` requests bounded by count, bytes and time, sends at most
//! `max_in_flight` at once, and reports each operation's outcome back to its job.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::time::Instant;

use crate::bulk::{self, Outcome, Pending};
use crate::client::Client;
use crate::document::{Indices, Op};
use crate::ElasticError;

/// The operations of one publish call and, once they are all settled, their outcomes.
pub(crate) struct Job {
    pub(crate) ops: Vec<Op>,
    outcomes: Mutex<Vec<Option<Outcome>>>,
    remaining: AtomicUsize,
    done: Mutex<Option<oneshot::Sender<()>>>,
}

impl Job {
    fn new(ops: Vec<Op>) -> (Arc<Self>, oneshot::Receiver<()>) {
        let (tx, rx) = oneshot::channel();
        let job = Self {
            outcomes: Mutex::new(ops.iter().map(|_| None).collect()),
            remaining: AtomicUsize::new(ops.len()),
            done: Mutex::new(Some(tx)),
            ops,
        };
        (Arc::new(job), rx)
    }

    fn settle(&self, op: usize, outcome: Outcome) {
        self.outcomes.lock().unwrap_or_else(PoisonError::into_inner)[op] = Some(outcome);
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            if let Some(tx) = self
                .done
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take()
            {
                let _ = tx.send(());
            }
        }
    }

    fn take_outcomes(&self) -> Vec<Outcome> {
        std::mem::take(&mut *self.outcomes.lock().unwrap_or_else(PoisonError::into_inner))
            .into_iter()
            .map(|o| o.unwrap_or(Outcome::Failed(ElasticError::Closed)))
            .collect()
    }
}

/// The publishing side of the task.
#[derive(Debug)]
pub(crate) struct Batcher {
    jobs: mpsc::Sender<Arc<Job>>,
}

impl Batcher {
    /// Starts the task on the current runtime.
    pub(crate) fn spawn(client: Client, indices: Indices) -> Self {
        let (tx, rx) = mpsc::channel(1024);
        tokio::spawn(run(client, indices, rx));
        Self { jobs: tx }
    }

    /// Hands `ops` to the task and waits until every one is settled; outcomes are in the
    /// order of `ops`.
    pub(crate) async fn submit(
        &self,
        ops: Vec<Op>,
    ) -> Result<(Arc<Job>, Vec<Outcome>), ElasticError> {
        if ops.is_empty() {
            let (job, _) = Job::new(ops);
            return Ok((job, Vec::new()));
        }
        let (job, done) = Job::new(ops);
        self.jobs
            .send(Arc::clone(&job))
            .await
            .map_err(|_| ElasticError::Closed)?;
        done.await.map_err(|_| ElasticError::Closed)?;
        let outcomes = job.take_outcomes();
        Ok((job, outcomes))
    }
}

/// Operations waiting for a batch.
#[derive(Default)]
struct Backlog {
    ops: VecDeque<(Arc<Job>, usize)>,
    bytes: usize,
}

impl Backlog {
    fn push(&mut self, job: Arc<Job>) {
        for i in 0..job.ops.len() {
            self.bytes += job.ops[i].bytes.len();
            self.ops.push_back((Arc::clone(&job), i));
        }
    }

    fn full(&self, max_docs: usize, max_bytes: usize) -> bool {
        self.ops.len() >= max_docs || self.bytes >= max_bytes
    }

    /// Takes the next batch: up to `max_docs` operations and `max_bytes` bytes (at least one
    /// operation, however large).
    fn take(&mut self, max_docs: usize, max_bytes: usize) -> Vec<(Arc<Job>, usize)> {
        let mut batch = Vec::new();
        let mut bytes = 0;
        while let Some((job, i)) = self.ops.front() {
            let len = job.ops[*i].bytes.len();
            if !batch.is_empty() && (batch.len() >= max_docs || bytes + len > max_bytes) {
                break;
            }
            bytes += len;
            self.bytes -= len;
            batch.extend(self.ops.pop_front());
        }
        batch
    }
}

async fn run(client: Client, indices: Indices, mut jobs: mpsc::Receiver<Arc<Job>>) {
    let (max_docs, max_bytes) = (client.config.max_batch_docs, client.config.max_batch_bytes);
    let linger = client.config.flush_interval;
    let in_flight = Arc::new(Semaphore::new(client.config.max_in_flight));
    let client = Arc::new(client);
    let indices = Arc::new(indices);
    let mut backlog = Backlog::default();
    let mut open = true;
    let mut deadline = Instant::now();
    while open || !backlog.ops.is_empty() {
        if backlog.ops.is_empty() {
            match jobs.recv().await {
                Some(job) => backlog.push(job),
                None => break,
            }
            deadline = Instant::now() + linger;
        }
        // Fill the batch until it is full, the oldest operation has waited long enough, or
        // no more jobs can come.
        while open && !backlog.full(max_docs, max_bytes) {
            tokio::select! {
                biased;
                job = jobs.recv() => match job {
                    Some(job) => backlog.push(job),
                    None => open = false,
                },
                () = tokio::time::sleep_until(deadline) => break,
            }
        }
        let batch = backlog.take(max_docs, max_bytes);
        let Ok(permit) = Arc::clone(&in_flight).acquire_owned().await else {
            break;
        };
        let (client, indices) = (Arc::clone(&client), Arc::clone(&indices));
        tokio::spawn(async move {
            let pending: Vec<Pending<'_>> = batch
                .iter()
                .map(|(job, i)| {
                    let op = &job.ops[*i];
                    Pending {
                        target: op.target,
                        id: &op.id,
                        index: indices.name(op.target),
                        bytes: &op.bytes,
                    }
                })
                .collect();
            let outcomes = bulk::execute(&client, &pending).await;
            drop(pending);
            for ((job, i), outcome) in batch.iter().zip(outcomes) {
                job.settle(*i, outcome);
            }
            drop(permit);
        });
        // Operations left over from a large job have waited already: flush them at once
        // unless more arrive to fill their batch.
        deadline = Instant::now().min(deadline);
    }
}
