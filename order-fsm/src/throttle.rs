//! A budget of log lines per second, for logging every rejection without letting a hostile
//! client flood the log.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Admits at most `per_second` events each second and counts the ones it turned away, so
/// the next admitted log line can say how many were left out.
///
/// Lock-free and cheap when over budget (two atomic operations): meant for a hot path that
/// logs each rejected request or dead letter.
///
/// ```
/// use order_fsm::Throttle;
///
/// let throttle = Throttle::per_second(2);
/// assert_eq!(throttle.admit(), Some(0));
/// assert_eq!(throttle.admit(), Some(0));
/// assert_eq!(throttle.admit(), None); // over this second's budget: not logged, counted
/// // In a later second the first admitted line reports the one left out:
/// // `if let Some(suppressed) = throttle.admit() { warn!(suppressed, "...") }`
/// ```
#[derive(Debug)]
pub struct Throttle {
    per_second: u64,
    start: Instant,
    /// `second << 32 | admitted this second`.
    window: AtomicU64,
    suppressed: AtomicU64,
}

impl Throttle {
    /// At most `per_second` admitted events per second (at least one).
    pub fn per_second(per_second: u32) -> Self {
        Self {
            per_second: u64::from(per_second.max(1)),
            start: Instant::now(),
            window: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(left out since the last admitted event)` when this event is within the
    /// budget (log it), `None` when it is not (skip it; it is counted).
    pub fn admit(&self) -> Option<u64> {
        let second = self.start.elapsed().as_secs();
        let mut current = self.window.load(Ordering::Relaxed);
        loop {
            let (window_second, admitted) = (current >> 32, current & 0xffff_ffff);
            let next = if window_second == second {
                if admitted >= self.per_second {
                    self.suppressed.fetch_add(1, Ordering::Relaxed);
                    return None;
                }
                current + 1
            } else {
                (second << 32) | 1
            };
            match self.window.compare_exchange_weak(
                current,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some(self.suppressed.swap(0, Ordering::Relaxed)),
                Err(seen) => current = seen,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_the_budget_then_counts_what_it_left_out() {
        let throttle = Throttle::per_second(3);
        let admitted: Vec<_> = (0..10).map(|_| throttle.admit()).collect();
        assert_eq!(admitted[..3], [Some(0), Some(0), Some(0)]);
        assert!(admitted[3..].iter().all(Option::is_none));
        // A new second: the budget is back and the first line reports the 7 left out.
        std::thread::sleep(std::time::Duration::from_millis(1_050));
        assert_eq!(throttle.admit(), Some(7));
        assert_eq!(throttle.admit(), Some(0));
    }

    #[test]
    fn concurrent_callers_share_one_budget() {
        let throttle = std::sync::Arc::new(Throttle::per_second(100));
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let throttle = throttle.clone();
                std::thread::spawn(move || {
                    (0..1_000).filter(|_| throttle.admit().is_some()).count()
                })
            })
            .collect();
        let admitted: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
        // All within one or two seconds of the throttle's start: 100 or 200 at most.
        assert!((100..=200).contains(&admitted), "{admitted}");
    }
}
