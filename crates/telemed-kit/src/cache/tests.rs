use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::*;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
enum LoadError {
    #[error("not found")]
    NotFound,
    #[error("upstream timed out")]
    Timeout,
}

fn enabled() -> CacheSettings {
    CacheSettings::default()
}

fn entries(bound: u64, ttl: Duration) -> CachePolicy {
    CachePolicy::new(Capacity::Entries(bound), ttl)
}

/// A loader that counts its runs and returns `result`.
async fn counted<T>(runs: &AtomicUsize, result: T) -> T {
    runs.fetch_add(1, Ordering::SeqCst);
    result
}

/// Polls `condition` every 10 ms until it holds; fails after `limit`. moka reads the real clock, so expiry can
/// only be observed, not advanced.
async fn eventually(limit: Duration, mut condition: impl AsyncFnMut() -> bool) -> Instant {
    let deadline = Instant::now() + limit;
    loop {
        if condition().await {
            return Instant::now();
        }
        assert!(
            Instant::now() < deadline,
            "condition not met within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_misses_run_one_load() {
    let cache: Cache<&str, Arc<str>, LoadError> = Cache::new(
        "single-flight",
        entries(10, Duration::from_secs(60)),
        &enabled(),
    )
    .unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    // A watch, not a `Notify`: were loads not coalesced, every waiting loader must be released so the test
    // fails on the count instead of hanging.
    let (release, released) = tokio::sync::watch::channel(false);
    let callers: Vec<_> = (0..1000)
        .map(|_| {
            let (cache, runs, mut released) = (cache.clone(), runs.clone(), released.clone());
            tokio::spawn(async move {
                cache
                    .get_or_try_load("cold", async move {
                        runs.fetch_add(1, Ordering::SeqCst);
                        let _ = released.wait_for(|released| *released).await;
                        Ok(Arc::from("loaded"))
                    })
                    .await
            })
        })
        .collect();
    // Hold the load until every caller has missed, so that each of them would load without single-flight.
    eventually(Duration::from_secs(30), async || {
        cache.stats().misses == 1000
    })
    .await;
    release.send_replace(true);
    for caller in callers {
        assert_eq!(&*caller.await.unwrap().unwrap(), "loaded");
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    let stats = cache.stats();
    assert_eq!((stats.misses, stats.loads, stats.hits), (1000, 1, 0));
}

#[tokio::test]
async fn errors_are_shared_by_waiters_but_not_cached() {
    let cache: Cache<u32, String, LoadError> =
        Cache::new("errors", entries(10, Duration::from_secs(60)), &enabled()).unwrap();
    let runs = AtomicUsize::new(0);
    let release = Notify::new();
    let failing = async {
        runs.fetch_add(1, Ordering::SeqCst);
        release.notified().await;
        Err(LoadError::Timeout)
    };
    let waiting = cache.get_or_try_load(1, async { unreachable!("the first load is shared") });
    let (first, second, ()) = tokio::join!(cache.get_or_try_load(1, failing), waiting, async {
        eventually(Duration::from_secs(5), async || cache.stats().misses == 2).await;
        release.notify_one();
    });
    let (first, second) = (first.unwrap_err(), second.unwrap_err());
    assert_eq!(*first, LoadError::Timeout);
    assert!(
        Arc::ptr_eq(&first, &second),
        "both callers get the one error"
    );

    let value = cache
        .get_or_try_load(1, counted(&runs, Ok("fresh".to_owned())))
        .await
        .unwrap();
    assert_eq!(value, "fresh");
    assert_eq!(runs.load(Ordering::SeqCst), 2, "the error was not cached");
    let stats = cache.stats();
    assert_eq!(
        (stats.loads, stats.load_errors, stats.negative_hits),
        (2, 1, 0)
    );
}

#[tokio::test]
async fn negative_caching_serves_the_error_until_its_own_ttl_runs_out() {
    let negative_ttl = Duration::from_millis(200);
    let policy = entries(10, Duration::from_secs(60))
        .with_negative_ttl(negative_ttl)
        .with_ttl_jitter(0.0);
    let cache: Cache<u32, String, LoadError> = Cache::new("negative", policy, &enabled()).unwrap();
    let runs = AtomicUsize::new(0);

    let before_load = Instant::now();
    let error = cache
        .get_or_try_load(7, counted(&runs, Err(LoadError::NotFound)))
        .await
        .unwrap_err();
    let cached = cache
        .get_or_try_load(7, counted(&runs, Ok("found".to_owned())))
        .await
        .unwrap_err();
    assert!(Arc::ptr_eq(&error, &cached), "the cached error is served");
    assert_eq!(cache.get(&7).await, None, "a cached error is not a value");

    let recovered = eventually(Duration::from_secs(5), async || {
        cache
            .get_or_try_load(7, counted(&runs, Ok("found".to_owned())))
            .await
            .is_ok()
    })
    .await;
    assert!(
        recovered - before_load >= negative_ttl,
        "expired after {:?}",
        recovered - before_load
    );
    let stats = cache.stats();
    assert!(stats.negative_hits >= 1);
    assert_eq!(stats.load_errors, 1);
    assert_eq!(
        runs.load(Ordering::SeqCst),
        2,
        "one failed load, one after expiry"
    );
}

#[tokio::test]
async fn only_errors_the_predicate_accepts_are_cached() {
    let policy = entries(10, Duration::from_secs(60)).with_negative_ttl(Duration::from_secs(60));
    let cache: Cache<u32, String, LoadError> = Cache::new("predicate", policy, &enabled()).unwrap();
    let not_found = |error: &LoadError| *error == LoadError::NotFound;
    let runs = AtomicUsize::new(0);

    for _ in 0..2 {
        let error = cache
            .get_or_try_load_with(1, counted(&runs, Err(LoadError::Timeout)), not_found)
            .await
            .unwrap_err();
        assert_eq!(*error, LoadError::Timeout);
    }
    assert_eq!(runs.load(Ordering::SeqCst), 2, "timeouts are not cached");

    for _ in 0..2 {
        let error = cache
            .get_or_try_load_with(2, counted(&runs, Err(LoadError::NotFound)), not_found)
            .await
            .unwrap_err();
        assert_eq!(*error, LoadError::NotFound);
    }
    assert_eq!(runs.load(Ordering::SeqCst), 3, "not found is cached");
}

#[tokio::test]
async fn entries_expire_no_earlier_than_the_jittered_lower_bound() {
    let ttl = Duration::from_millis(300);
    let policy = entries(100, ttl).with_ttl_jitter(0.5);
    let cache: Cache<u32, u32> = Cache::new("ttl", policy, &enabled()).unwrap();
    let before_insert = Instant::now();
    for key in 0..50 {
        cache.insert(key, key).await;
    }
    let mut gone_at = Vec::new();
    for key in 0..50 {
        gone_at.push(
            eventually(Duration::from_secs(5), async || {
                cache.get(&key).await.is_none()
            })
            .await,
        );
    }
    let lower = ttl.mul_f64(0.5);
    for gone in gone_at {
        assert!(
            gone - before_insert >= lower,
            "expired after {:?}",
            gone - before_insert
        );
    }
    // moka removes expired entries (and reports them) when its timer wheel's bucket passes, about a second
    // after the expiry that `get` already honours.
    eventually(Duration::from_secs(5), async || {
        cache.run_pending_tasks().await;
        cache.stats().entries == 0
    })
    .await;
    let stats = cache.stats();
    assert_eq!(stats.expirations, 50);
    assert_eq!(stats.evictions, 0);
}

#[tokio::test]
async fn reads_keep_an_entry_alive_past_its_idle_time_and_idleness_expires_it() {
    let idle = Duration::from_millis(300);
    let policy = entries(10, Duration::from_secs(60)).with_time_to_idle(idle);
    let cache: Cache<u32, u32> = Cache::new("idle", policy, &enabled()).unwrap();

    // Reads every 20 ms for three idle periods. A read is only expected to succeed when it started within one
    // idle period of the previous read's start; should the machine stall longer, the chain starts over.
    let mut proven = false;
    for _attempt in 0..5 {
        cache.insert(1, 1).await;
        let inserted = Instant::now();
        let mut previous = inserted;
        let mut broken = false;
        while previous - inserted < idle * 3 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let started = Instant::now();
            let found = cache.get(&1).await.is_some();
            if Instant::now() - previous >= idle {
                broken = true;
                break;
            }
            assert!(
                found,
                "read {:?} after the previous one",
                started - previous
            );
            previous = started;
        }
        if !broken {
            proven = true;
            break;
        }
    }
    assert!(proven, "the machine stalled in every attempt");

    let last_read = Instant::now();
    cache.get(&1).await;
    let gone = eventually(Duration::from_secs(5), async || !cache.contains_key(&1)).await;
    assert!(
        gone - last_read >= idle,
        "expired {:?} after the last read",
        gone - last_read
    );
}

#[tokio::test]
async fn entry_bound_holds_with_many_distinct_keys() {
    let cache: Cache<u64, u64> =
        Cache::new("bounded", entries(100, Duration::from_secs(60)), &enabled()).unwrap();
    for key in 0..10_000 {
        cache.insert(key, key).await;
    }
    cache.run_pending_tasks().await;
    let stats = cache.stats();
    assert!(stats.entries <= 100, "{} entries", stats.entries);
    assert_eq!(stats.weighted_size, stats.entries);
    assert_eq!(stats.evictions, 10_000 - stats.entries);
}

#[tokio::test]
async fn weight_bound_holds_with_many_distinct_keys() {
    let policy = CachePolicy::new(Capacity::Weight(10_000), Duration::from_secs(60));
    let cache: Cache<u64, Arc<[u8]>> =
        Cache::weighted("bytes", policy, &enabled(), |_, value: &Arc<[u8]>| {
            u32::try_from(value.len()).unwrap_or(u32::MAX)
        })
        .unwrap();
    let value: Arc<[u8]> = Arc::from(vec![0_u8; 100]);
    for key in 0..1_000 {
        cache.insert(key, value.clone()).await;
    }
    cache.run_pending_tasks().await;
    let stats = cache.stats();
    assert!(
        stats.weighted_size <= 10_000,
        "{} bytes",
        stats.weighted_size
    );
    assert!(stats.entries <= 100 && stats.entries > 0);
}

#[tokio::test]
async fn disabled_cache_calls_the_loader_every_time_and_stores_nothing() {
    let disabled = CacheSettings { disabled: true };
    let policy = entries(10, Duration::from_secs(60)).with_negative_ttl(Duration::from_secs(60));
    let cache: Cache<u32, String, LoadError> = Cache::new("off", policy, &disabled).unwrap();
    assert!(!cache.is_enabled());
    let runs = AtomicUsize::new(0);
    for _ in 0..3 {
        let value = cache
            .get_or_try_load(1, counted(&runs, Ok("v".to_owned())))
            .await
            .unwrap();
        assert_eq!(value, "v");
    }
    for _ in 0..2 {
        cache
            .get_or_try_load(2, counted(&runs, Err(LoadError::NotFound)))
            .await
            .unwrap_err();
    }
    assert_eq!(runs.load(Ordering::SeqCst), 5);
    cache.insert(3, "inserted".to_owned()).await;
    assert_eq!(cache.get(&3).await, None);
    let stats = cache.stats();
    assert_eq!((stats.hits, stats.misses, stats.loads), (0, 6, 5));
    assert_eq!(stats.entries, 0);
}

#[tokio::test]
async fn a_lazy_loader_is_made_only_on_a_miss_and_the_hit_future_stays_small() {
    for settings in [enabled(), CacheSettings { disabled: true }] {
        let cache: Cache<u32, String, LoadError> =
            Cache::new("lazy", entries(10, Duration::from_secs(60)), &settings).unwrap();
        let (made, runs) = (AtomicUsize::new(0), AtomicUsize::new(0));
        for _ in 0..3 {
            let make = || {
                made.fetch_add(1, Ordering::SeqCst);
                counted(&runs, Ok("v".to_owned()))
            };
            assert_eq!(
                cache.get_or_try_load_lazy(1, make, |_| true).await.unwrap(),
                "v"
            );
        }
        let expected = if cache.is_enabled() { 1 } else { 3 };
        assert_eq!(made.load(Ordering::SeqCst), expected, "loaders made");
        assert_eq!(runs.load(Ordering::SeqCst), expected, "loaders run");
    }

    // The loader's state (here a 16 KiB buffer held across an await) stays out of the lookup's own future.
    let cache: Cache<u32, String, LoadError> = Cache::new(
        "lazy-size",
        entries(10, Duration::from_secs(60)),
        &enabled(),
    )
    .unwrap();
    let large = || async {
        let buffer = [0u8; 16 * 1024];
        tokio::task::yield_now().await;
        Ok(buffer.len().to_string())
    };
    let lazy = cache.get_or_try_load_lazy(1, large, |_| true);
    assert!(
        std::mem::size_of_val(&lazy) < 2 * 1024,
        "{} bytes",
        std::mem::size_of_val(&lazy)
    );
    assert_eq!(lazy.await.unwrap(), "16384");
}

#[tokio::test]
async fn invalidation_makes_the_next_lookup_load_again() {
    let cache: Cache<String, u32> = Cache::new(
        "invalidate",
        entries(10, Duration::from_secs(60)),
        &enabled(),
    )
    .unwrap();
    cache.insert("a".to_owned(), 1).await;
    cache.insert("b".to_owned(), 2).await;
    assert_eq!(cache.get("a").await, Some(1));

    cache.invalidate("a").await;
    assert_eq!(cache.get("a").await, None);
    assert_eq!(cache.get("b").await, Some(2));

    cache.invalidate_all();
    assert_eq!(cache.get("b").await, None);
    let runs = AtomicUsize::new(0);
    let value = cache
        .get_or_try_load("b".to_owned(), counted(&runs, Ok(3)))
        .await
        .unwrap();
    assert_eq!((value, runs.load(Ordering::SeqCst)), (3, 1));
    let stats = cache.stats();
    assert_eq!((stats.hits, stats.misses), (2, 3));
}

#[test]
fn capacity_kind_must_match_the_constructor() {
    let by_weight = CachePolicy::new(Capacity::Weight(1_000), Duration::from_secs(1));
    let error = Cache::<u32, u32>::new("w", by_weight, &enabled()).unwrap_err();
    assert_eq!(error, PolicyError::WeigherMissing);
    let by_entries = entries(10, Duration::from_secs(1));
    let error = Cache::<u32, u32>::weighted("e", by_entries, &enabled(), |_, _| 1).unwrap_err();
    assert_eq!(error, PolicyError::WeigherUnused);
    let error =
        Cache::<u32, u32>::new("z", entries(0, Duration::from_secs(1)), &enabled()).unwrap_err();
    assert_eq!(error, PolicyError::ZeroCapacity);
}
