//! Which delivered offsets are done, per partition, and how far each may be committed.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

/// Delivered offsets of one assigned partition, oldest first, with whether each is done.
#[derive(Debug)]
struct Partition {
    generation: u64,
    pending: VecDeque<(i64, bool)>,
    /// Next offset to commit: every delivered offset below it is done.
    done_up_to: Option<i64>,
    committed: Option<i64>,
}

/// Shared between the polling thread (deliveries, rebalances, commits) and the acks.
#[derive(Debug, Default)]
pub(crate) struct Tracker {
    partitions: Mutex<HashMap<i32, Partition>>,
    generations: AtomicU64,
    /// Bumped at every revocation; items tagged with the current epoch are still owned.
    epoch: AtomicU64,
}

/// Where a delivered message sits in the tracker.
#[derive(Clone, Copy, Debug)]
pub(super) struct Ticket {
    pub(super) partition: i32,
    pub(super) offset: i64,
    generation: u64,
    epoch: u64,
}

impl Tracker {
    fn lock(&self) -> MutexGuard<'_, HashMap<i32, Partition>> {
        // Every critical section leaves the map consistent, so a poisoned lock is usable.
        self.partitions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts tracking newly assigned partitions (a fresh generation each).
    pub(super) fn assign(&self, partitions: impl IntoIterator<Item = i32>) {
        let mut map = self.lock();
        for p in partitions {
            let generation = self.generations.fetch_add(1, Ordering::Relaxed) + 1;
            map.insert(
                p,
                Partition {
                    generation,
                    pending: VecDeque::new(),
                    done_up_to: None,
                    committed: None,
                },
            );
        }
    }

    /// Stops tracking revoked partitions; returns the offsets still to commit for them.
    pub(super) fn revoke(&self, partitions: impl IntoIterator<Item = i32>) -> Vec<(i32, i64)> {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        let mut map = self.lock();
        let mut out = Vec::new();
        for p in partitions {
            // Committed again even if unchanged: an earlier asynchronous commit may have failed.
            if let Some(offset) = map.remove(&p).and_then(|track| track.done_up_to) {
                out.push((p, offset));
            }
        }
        out
    }

    /// Records a delivered message and returns its ticket.
    pub(super) fn deliver(&self, partition: i32, offset: i64) -> Ticket {
        let epoch = self.epoch.load(Ordering::SeqCst);
        let mut map = self.lock();
        let track = map.entry(partition).or_insert_with(|| Partition {
            generation: self.generations.fetch_add(1, Ordering::Relaxed) + 1,
            pending: VecDeque::new(),
            done_up_to: None,
            committed: None,
        });
        track.pending.push_back((offset, false));
        Ticket {
            partition,
            offset,
            generation: track.generation,
            epoch,
        }
    }

    /// Whether the partition of `ticket` is still assigned to this consumer.
    pub(super) fn owns(&self, ticket: &Ticket) -> bool {
        ticket.epoch == self.epoch.load(Ordering::SeqCst)
            || self
                .lock()
                .get(&ticket.partition)
                .is_some_and(|t| t.generation == ticket.generation)
    }

    /// Marks the ticket's offset done (ignored when its partition was revoked since).
    pub(super) fn done(&self, ticket: &Ticket) {
        let mut map = self.lock();
        let Some(track) = map.get_mut(&ticket.partition) else {
            return;
        };
        if track.generation != ticket.generation {
            return;
        }
        let index = match track.pending.front() {
            Some(&(front, _)) if front == ticket.offset => 0,
            _ => match track
                .pending
                .binary_search_by_key(&ticket.offset, |&(o, _)| o)
            {
                Ok(i) => i,
                Err(_) => return,
            },
        };
        track.pending[index].1 = true;
        while let Some(&(offset, true)) = track.pending.front() {
            track.done_up_to = Some(offset + 1);
            track.pending.pop_front();
        }
    }

    /// Offsets that advanced since the last commit (all done offsets when `all`), marked as
    /// committed.
    pub(super) fn take_committable(&self, all: bool) -> Vec<(i32, i64)> {
        let mut map = self.lock();
        let mut out = Vec::new();
        for (&p, track) in map.iter_mut() {
            if let Some(offset) = track
                .done_up_to
                .filter(|o| all || Some(*o) != track.committed)
            {
                track.committed = Some(offset);
                out.push((p, offset));
            }
        }
        out
    }

    /// Forgets that `offsets` were committed (the commit failed), so they are tried again.
    pub(super) fn uncommit(&self, offsets: &[(i32, i64)]) {
        let mut map = self.lock();
        for (p, offset) in offsets {
            if let Some(track) = map.get_mut(p) {
                if track.committed == Some(*offset) {
                    track.committed = None;
                }
            }
        }
    }
}

impl crate::watchdog::Reading for Tracker {
    /// Whether this consumer owns `partition` and has read it past `committed` (so it is
    /// working on it, however slowly).
    fn reading(&self, partition: i32, committed: i64) -> bool {
        self.lock().get(&partition).is_some_and(|track| {
            track.pending.back().is_some_and(|&(o, _)| o >= committed)
                || track.done_up_to.is_some_and(|o| o > committed)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_only_the_done_prefix() {
        let tracker = Tracker::default();
        tracker.assign([0]);
        let tickets: Vec<Ticket> = (10..15).map(|o| tracker.deliver(0, o)).collect();
        tracker.done(&tickets[2]);
        tracker.done(&tickets[1]);
        assert!(tracker.take_committable(false).is_empty());
        tracker.done(&tickets[0]);
        assert_eq!(tracker.take_committable(false), vec![(0, 13)]);
        assert!(tracker.take_committable(false).is_empty());
        tracker.done(&tickets[4]);
        assert!(tracker.take_committable(false).is_empty());
        tracker.done(&tickets[3]);
        assert_eq!(tracker.revoke([0]), vec![(0, 15)]);
    }

    #[test]
    fn ignores_acks_of_revoked_partitions() {
        let tracker = Tracker::default();
        tracker.assign([1]);
        let old = tracker.deliver(1, 0);
        assert!(tracker.owns(&old));
        assert!(tracker.revoke([1]).is_empty());
        assert!(!tracker.owns(&old));
        tracker.assign([1]);
        let new = tracker.deliver(1, 0);
        tracker.done(&old);
        assert!(tracker.take_committable(false).is_empty());
        tracker.done(&new);
        assert_eq!(tracker.take_committable(false), vec![(1, 1)]);
    }
}
