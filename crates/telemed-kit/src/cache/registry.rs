//! Every live cache in the process, so that metrics can report them without each service wiring them up.
//!
//! A cache registers a stats function when it is built and holds the only strong reference to it: when the
//! last handle of a cache is dropped, its entry here dies with it and is skipped (and pruned) on the next read.

use std::sync::{Arc, Mutex, Weak};

use super::CacheStats;

pub(super) type StatsFn = dyn Fn() -> CacheStats + Send + Sync;

static CACHES: Mutex<Vec<(Arc<str>, Weak<StatsFn>)>> = Mutex::new(Vec::new());

pub(super) fn register(name: Arc<str>, stats: &Arc<StatsFn>) {
    if let Ok(mut caches) = CACHES.lock() {
        caches.retain(|(_, stats)| stats.strong_count() > 0);
        caches.push((name, Arc::downgrade(stats)));
    }
}

/// The name and current stats of every cache alive in the process.
pub fn all_stats() -> Vec<(Arc<str>, CacheStats)> {
    let Ok(mut caches) = CACHES.lock() else {
        return Vec::new();
    };
    caches.retain(|(_, stats)| stats.strong_count() > 0);
    caches
        .iter()
        .filter_map(|(name, stats)| stats.upgrade().map(|stats| (name.clone(), stats())))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::cache::{Cache, CachePolicy, CacheSettings, Capacity};

    #[tokio::test]
    async fn a_cache_is_listed_while_a_handle_lives() {
        let policy = CachePolicy::new(Capacity::Entries(10), Duration::from_secs(60));
        let cache: Cache<u32, u32> =
            Cache::new("registry-test", policy, &CacheSettings::default()).unwrap();
        cache.insert(1, 1).await;
        let _ = cache.get(&1).await;
        let listed = |name: &str| {
            all_stats()
                .into_iter()
                .find(|(listed, _)| &**listed == name)
        };
        assert_eq!(
            listed("registry-test").map(|(_, stats)| stats.hits),
            Some(1)
        );
        let clone = cache.clone();
        drop(cache);
        assert!(listed("registry-test").is_some(), "a clone keeps it listed");
        drop(clone);
        assert!(listed("registry-test").is_none());
    }
}
