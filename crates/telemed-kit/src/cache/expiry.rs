//! Per-entry lifetimes: the jittered TTL drawn when an entry is stored, and the moka [`Expiry`] that enforces
//! it together with the time-to-idle.
//!
//! moka's builder-level `time_to_idle` is not combined with a per-entry [`Expiry`] here: on every read moka
//! folds the idle deadline into the entry's own expiration time, after which further reads can no longer push
//! it later, so idle expiry would silently turn into "expire at first read + idle". Keeping both rules in one
//! `Expiry`, with the entry's own TTL stored beside its value, gives the intended result: an entry lives until
//! the earlier of its TTL and its idle deadline.

use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::Expiry;

/// What the cache stores for a key: a value, or (with negative caching) a loader's error.
pub(super) struct Slot<V, E> {
    /// This entry's lifetime from its last write, jitter included; fixed when the slot is made.
    pub(super) ttl: Duration,
    pub(super) content: Content<V, E>,
}

pub(super) enum Content<V, E> {
    Value(V),
    /// The error of a failed load, shared with every caller until it expires.
    Error(Arc<E>),
}

// Derived `Clone` would demand `E: Clone`; the error is shared through its `Arc`.
impl<V: Clone, E> Clone for Slot<V, E> {
    fn clone(&self) -> Self {
        Self {
            ttl: self.ttl,
            content: match &self.content {
                Content::Value(value) => Content::Value(value.clone()),
                Content::Error(error) => Content::Error(Arc::clone(error)),
            },
        }
    }
}

/// Enforces each entry's own TTL, and the time-to-idle when there is one.
pub(super) struct EntryExpiry {
    pub(super) time_to_idle: Option<Duration>,
}

impl EntryExpiry {
    fn after_write<V, E>(&self, slot: &Slot<V, E>) -> Option<Duration> {
        Some(match self.time_to_idle {
            Some(idle) => idle.min(slot.ttl),
            None => slot.ttl,
        })
    }
}

impl<K, V, E> Expiry<K, Slot<V, E>> for EntryExpiry {
    fn expire_after_create(&self, _key: &K, slot: &Slot<V, E>, _at: Instant) -> Option<Duration> {
        self.after_write(slot)
    }

    fn expire_after_update(
        &self,
        _key: &K,
        slot: &Slot<V, E>,
        _at: Instant,
        _remaining: Option<Duration>,
    ) -> Option<Duration> {
        self.after_write(slot)
    }

    fn expire_after_read(
        &self,
        _key: &K,
        slot: &Slot<V, E>,
        read_at: Instant,
        remaining: Option<Duration>,
        last_modified_at: Instant,
    ) -> Option<Duration> {
        let Some(idle) = self.time_to_idle else {
            return remaining;
        };
        let ttl_left = (last_modified_at + slot.ttl).saturating_duration_since(read_at);
        Some(idle.min(ttl_left))
    }
}

/// `ttl` scaled by a factor drawn uniformly from `1 - jitter .. 1 + jitter`.
pub(super) fn jittered(ttl: Duration, jitter: f64) -> Duration {
    if jitter == 0.0 {
        return ttl;
    }
    ttl.mul_f64(1.0 + jitter * (2.0 * unit_random() - 1.0))
}

/// A number in `0..1`. Jitter needs spread, not unpredictability: the standard library's randomly keyed
/// SipHash, freshly keyed per call, gives that without a dependency.
fn unit_random() -> f64 {
    let bits = RandomState::new().hash_one(0_u8) >> 11;
    // 53 bits fit an f64 mantissa exactly, so the quotient is uniform in [0, 1).
    bits as f64 / (1_u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value_slot(ttl: Duration) -> Slot<(), ()> {
        Slot {
            ttl,
            content: Content::Value(()),
        }
    }

    #[test]
    fn jitter_stays_within_its_bounds_and_spreads() {
        let ttl = Duration::from_secs(100);
        let drawn: Vec<Duration> = (0..10_000).map(|_| jittered(ttl, 0.1)).collect();
        let low = Duration::from_secs(90);
        let high = Duration::from_secs(110);
        assert!(drawn.iter().all(|d| (low..=high).contains(d)));
        let min = drawn.iter().min().unwrap();
        let max = drawn.iter().max().unwrap();
        // Uniform over 20 s: 10 000 draws leave the outer seconds empty with negligible probability.
        assert!(*min < Duration::from_secs(91), "{min:?}");
        assert!(*max > Duration::from_secs(109), "{max:?}");
        let below = drawn.iter().filter(|d| **d < ttl).count();
        assert!((4_000..6_000).contains(&below), "{below} of 10000 below");
        assert_eq!(jittered(ttl, 0.0), ttl);
    }

    #[test]
    fn idle_deadline_moves_with_reads_but_never_past_the_ttl() {
        let expiry = EntryExpiry {
            time_to_idle: Some(Duration::from_secs(10)),
        };
        let slot = value_slot(Duration::from_secs(25));
        let written = Instant::now();
        let create = Expiry::<(), _>::expire_after_create(&expiry, &(), &slot, written);
        assert_eq!(create, Some(Duration::from_secs(10)));
        let read = |after: u64| {
            Expiry::<(), _>::expire_after_read(
                &expiry,
                &(),
                &slot,
                written + Duration::from_secs(after),
                None,
                written,
            )
        };
        assert_eq!(read(8), Some(Duration::from_secs(10)));
        assert_eq!(read(20), Some(Duration::from_secs(5)));
        assert_eq!(read(30), Some(Duration::ZERO));
    }

    #[test]
    fn without_idle_the_entry_keeps_its_own_ttl() {
        let expiry = EntryExpiry { time_to_idle: None };
        let slot = value_slot(Duration::from_secs(7));
        let now = Instant::now();
        assert_eq!(
            Expiry::<(), _>::expire_after_create(&expiry, &(), &slot, now),
            Some(Duration::from_secs(7))
        );
        let remaining = Some(Duration::from_secs(3));
        assert_eq!(
            Expiry::<(), _>::expire_after_read(&expiry, &(), &slot, now, remaining, now),
            remaining
        );
        assert_eq!(
            Expiry::<(), _>::expire_after_update(&expiry, &(), &slot, now, remaining),
            Some(Duration::from_secs(7))
        );
    }
}
