//! Counters of what a cache did, kept in relaxed atomics so that counting costs a request next to nothing.

use std::sync::atomic::{AtomicU64, Ordering};

/// The running counts behind [`CacheStats`], shared by the cache handle and moka's eviction listener.
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) hits: AtomicU64,
    pub(super) negative_hits: AtomicU64,
    pub(super) misses: AtomicU64,
    pub(super) loads: AtomicU64,
    pub(super) load_errors: AtomicU64,
    pub(super) evictions: AtomicU64,
    pub(super) expirations: AtomicU64,
}

impl Counters {
    pub(super) fn add(counter: &AtomicU64) {
        // Each counter is read on its own; no ordering with other memory is needed.
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn snapshot(&self, entries: u64, weighted_size: u64) -> CacheStats {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        CacheStats {
            hits: read(&self.hits),
            negative_hits: read(&self.negative_hits),
            misses: read(&self.misses),
            loads: read(&self.loads),
            load_errors: read(&self.load_errors),
            evictions: read(&self.evictions),
            expirations: read(&self.expirations),
            entries,
            weighted_size,
        }
    }
}

/// A snapshot of one cache's counters, from [`Cache::stats`](super::Cache::stats).
///
/// Every count only grows, from the cache's creation, as Prometheus counters expect. The counts are read one by
/// one, not as a consistent set: under load, `loads` may already include a load whose `misses` is not counted
/// yet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheStats {
    /// Lookups answered with a cached value.
    pub hits: u64,
    /// Lookups answered with a cached error (negative caching).
    pub negative_hits: u64,
    /// Lookups that found nothing at first look. A miss of `get_or_try_load` then either runs the loader or
    /// waits for the load another caller already started, so `misses - loads` is the number of callers that
    /// single-flight spared a load.
    pub misses: u64,
    /// Loader runs.
    pub loads: u64,
    /// Loader runs that returned an error.
    pub load_errors: u64,
    /// Entries removed to keep the cache within its capacity (including new entries the admission policy
    /// declined to keep).
    pub evictions: u64,
    /// Entries removed because their TTL or time-to-idle ran out. An expired entry is never served, but moka
    /// removes it (and it is counted) only when its timer wheel's bucket has passed, about a second later, and
    /// during a cache operation, so this count lags behind the expiry itself.
    pub expirations: u64,
    /// Entries currently held. Like `weighted_size`, moka updates it during housekeeping, so it may briefly
    /// lag behind inserts and removals.
    pub entries: u64,
    /// The total weight of the entries for a cache bounded by [`Capacity::Weight`](super::Capacity::Weight);
    /// equal to `entries` otherwise.
    pub weighted_size: u64,
}
