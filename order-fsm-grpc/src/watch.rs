//! Live transitions for `WatchOrder`: a broadcasting sink and the per-stream task.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use order_fsm::{
    Error as CoreError, Lifecycle, OrderId, OrderState, OrderStore, TransitionRecord,
    TransitionSink,
};
use tokio::sync::{broadcast, mpsc, watch};
use tokio::time::{Instant, MissedTickBehavior};
use tonic::Status;

use crate::error::to_status;
use crate::proto;
use order_fsm_proto::transition_of;

/// A [`TransitionSink`] that broadcasts every published batch to the server's `WatchOrder`
/// streams. Add a clone to the runner (`RunnerBuilder::sink`) and give one to
/// [`crate::OrderServiceBuilder::with_watch_hub`].
///
/// Publishing never fails and never waits: with no stream listening the batch is dropped,
/// and a stream that falls more than `capacity` batches behind catches up from the store.
#[derive(Clone, Debug)]
pub struct WatchHub {
    tx: broadcast::Sender<Arc<[TransitionRecord]>>,
}

impl Default for WatchHub {
    fn default() -> Self {
        Self::new(1024)
    }
}

impl WatchHub {
    /// A hub buffering up to `capacity` batches per slow stream.
    pub fn new(capacity: usize) -> Self {
        Self {
            tx: broadcast::channel(capacity.max(1)).0,
        }
    }

    /// Number of streams listening now.
    pub fn watchers(&self) -> usize {
        self.tx.receiver_count()
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Arc<[TransitionRecord]>> {
        self.tx.subscribe()
    }
}

#[async_trait]
impl TransitionSink for WatchHub {
    async fn publish(&self, records: &[TransitionRecord]) -> Result<(), CoreError> {
        if self.tx.receiver_count() > 0 && !records.is_empty() {
            // An error only means every receiver went away meanwhile.
            let _ = self.tx.send(records.into());
        }
        Ok(())
    }
}

/// Everything one watch stream needs.
pub(crate) struct Watch {
    pub(crate) order: OrderState,
    pub(crate) lifecycle: Arc<Lifecycle>,
    pub(crate) store: Arc<dyn OrderStore>,
    pub(crate) live: Option<broadcast::Receiver<Arc<[TransitionRecord]>>>,
    pub(crate) poll: Duration,
    pub(crate) deadline: Option<Instant>,
    pub(crate) shutdown: watch::Receiver<bool>,
}

type Tx = mpsc::Sender<Result<proto::Transition, Status>>;

/// Whether the stream is done (terminal record sent, or the client went away).
enum Sent {
    More,
    Done,
}

impl Watch {
    /// Replays the order's history, then forwards live records in version order, ending
    /// after a terminal record, at the deadline or at shutdown.
    pub(crate) async fn run(self, tx: Tx) {
        let Watch {
            order,
            lifecycle,
            store,
            mut live,
            poll,
            deadline,
            mut shutdown,
        } = self;
        let replay = Replay {
            id: order.id,
            lifecycle,
            store,
        };
        let mut next = 1;
        if let Sent::Done = replay.send_from(&tx, &order, &mut next).await {
            return;
        }
        let mut tick = tokio::time::interval_at(Instant::now() + poll, poll);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let sleep_deadline = async move {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(sleep_deadline);
        loop {
            let received = async {
                match live.as_mut() {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            };
            let outcome = tokio::select! {
                biased;
                () = stopped(&mut shutdown) => {
                    let _ = tx.send(Err(Status::unavailable("server is shutting down"))).await;
                    return;
                }
                () = tx.closed() => return,
                () = &mut sleep_deadline => {
                    let _ = tx.send(Err(Status::deadline_exceeded("watch deadline exceeded"))).await;
                    return;
                }
                received = received => match received {
                    Ok(batch) => replay.forward(&tx, &batch, &mut next).await,
                    Err(broadcast::error::RecvError::Lagged(_)) => replay.catch_up(&tx, &mut next).await,
                    Err(broadcast::error::RecvError::Closed) => {
                        live = None;
                        Sent::More
                    }
                },
                _ = tick.tick() => replay.catch_up(&tx, &mut next).await,
            };
            if let Sent::Done = outcome {
                return;
            }
        }
    }
}

/// Sends one order's records in version order, from the store or from live batches.
struct Replay {
    id: OrderId,
    lifecycle: Arc<Lifecycle>,
    store: Arc<dyn OrderStore>,
}

impl Replay {
    async fn forward(&self, tx: &Tx, batch: &[TransitionRecord], next: &mut u64) -> Sent {
        for record in batch.iter().filter(|r| r.order_id == self.id) {
            if record.version > *next {
                // Published before the store has every earlier version: fill from the store.
                if let Sent::Done = self.catch_up(tx, next).await {
                    return Sent::Done;
                }
            }
            if record.version == *next {
                if let Sent::Done = send(tx, record, next).await {
                    return Sent::Done;
                }
            }
        }
        Sent::More
    }

    async fn catch_up(&self, tx: &Tx, next: &mut u64) -> Sent {
        match self.store.get(self.id).await {
            Ok(Some(order)) => self.send_from(tx, &order, next).await,
            Ok(None) => Sent::More,
            Err(e) if e.is_retryable() => Sent::More,
            Err(e) => {
                let _ = tx.send(Err(to_status(e, None))).await;
                Sent::Done
            }
        }
    }

    async fn send_from(&self, tx: &Tx, order: &OrderState, next: &mut u64) -> Sent {
        if order.version < *next {
            return Sent::More;
        }
        for record in TransitionRecord::all_of(&self.lifecycle, order) {
            if record.version == *next {
                if let Sent::Done = send(tx, &record, next).await {
                    return Sent::Done;
                }
            }
        }
        Sent::More
    }
}

async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    // An error means the server is gone: treat it as stopped.
    let _ = shutdown.wait_for(|stop| *stop).await;
}

async fn send(tx: &Tx, record: &TransitionRecord, next: &mut u64) -> Sent {
    if tx.send(Ok(transition_of(record))).await.is_err() {
        return Sent::Done;
    }
    *next = record.version + 1;
    if record.terminal {
        Sent::Done
    } else {
        Sent::More
    }
}
