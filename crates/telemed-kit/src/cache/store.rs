//! [`Cache`]: a bounded moka future cache with single-flight loading, jittered TTLs, optional negative caching,
//! counters, and a pass-through mode.

use std::borrow::{Borrow, Cow};
use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;

use moka::notification::RemovalCause;

use super::expiry::{Content, EntryExpiry, Slot, jittered};
use super::settings::{CachePolicy, CacheSettings, Capacity, PolicyError};
use super::stats::{CacheStats, Counters};

/// The weight given to a cached error in a cache bounded by [`Capacity::Weight`]: the weigher only knows how to
/// measure values, and an error entry (the error, its `Arc`, the key and moka's bookkeeping) is assumed to take
/// about this many bytes.
pub const ERROR_ENTRY_WEIGHT: u32 = 1024;

/// A bounded, shared in-memory cache in front of a slower source of shared, non-personal data.
///
/// `K` is the key, `V` the value (cloned out on every hit: use an `Arc` for anything large) and `E` the error
/// its loaders fail with. `E` is part of the type because a cached error (negative caching) must come back as
/// the type its caller expects; it defaults to [`Infallible`] for caches that only `insert` and `get`.
///
/// Cloning is cheap and every clone is the same cache. See the [module docs](super) for what may be cached and
/// how instances converge.
pub struct Cache<K, V, E = Infallible> {
    name: Arc<str>,
    policy: Arc<CachePolicy>,
    counters: Arc<Counters>,
    /// `None` when `CACHE_DISABLED` turned the cache into a pass-through.
    store: Option<moka::future::Cache<K, Slot<V, E>>>,
    /// Keeps this cache listed in [`all_stats`](super::all_stats) while any handle lives.
    registration: Arc<super::registry::StatsFn>,
}

impl<K, V, E> Clone for Cache<K, V, E> {
    fn clone(&self) -> Self {
        Self {
            name: Arc::clone(&self.name),
            policy: Arc::clone(&self.policy),
            counters: Arc::clone(&self.counters),
            store: self.store.clone(),
            registration: Arc::clone(&self.registration),
        }
    }
}

impl<K, V, E> fmt::Debug for Cache<K, V, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cache")
            .field("name", &self.name)
            .field("enabled", &self.store.is_some())
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

type SlotWeigher<K, V, E> = Box<dyn Fn(&K, &Slot<V, E>) -> u32 + Send + Sync>;

impl<K, V, E> Cache<K, V, E>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    E: Send + Sync + 'static,
{
    /// A cache bounded by [`Capacity::Entries`]. `name` identifies it in logs and metrics.
    ///
    /// Fails when the policy is unusable, or bounded by weight (use [`Cache::weighted`]).
    pub fn new(
        name: impl Into<Cow<'static, str>>,
        policy: CachePolicy,
        settings: &CacheSettings,
    ) -> Result<Self, PolicyError> {
        if matches!(policy.capacity, Capacity::Weight(_)) {
            return Err(PolicyError::WeigherMissing);
        }
        Self::build(name.into(), policy, settings, None)
    }

    /// A cache bounded by [`Capacity::Weight`]: `weigher` returns each entry's weight in the capacity's unit,
    /// normally its size in bytes. Include a fixed per-entry overhead (moka's bookkeeping takes roughly a
    /// hundred bytes per entry), or many tiny values will use far more memory than the bound suggests. A cached
    /// error weighs [`ERROR_ENTRY_WEIGHT`].
    ///
    /// Fails when the policy is unusable, or bounded by entries (use [`Cache::new`]).
    pub fn weighted(
        name: impl Into<Cow<'static, str>>,
        policy: CachePolicy,
        settings: &CacheSettings,
        weigher: impl Fn(&K, &V) -> u32 + Send + Sync + 'static,
    ) -> Result<Self, PolicyError> {
        if matches!(policy.capacity, Capacity::Entries(_)) {
            return Err(PolicyError::WeigherUnused);
        }
        let weigher = move |key: &K, slot: &Slot<V, E>| match &slot.content {
            Content::Value(value) => weigher(key, value),
            Content::Error(_) => ERROR_ENTRY_WEIGHT,
        };
        Self::build(name.into(), policy, settings, Some(Box::new(weigher)))
    }

    fn build(
        name: Cow<'static, str>,
        policy: CachePolicy,
        settings: &CacheSettings,
        weigher: Option<SlotWeigher<K, V, E>>,
    ) -> Result<Self, PolicyError> {
        policy.validate()?;
        let counters = Arc::new(Counters::default());
        let store = if settings.disabled {
            tracing::info!(cache = %name, "CACHE_DISABLED: the cache passes every lookup to its loader");
            None
        } else {
            let (Capacity::Entries(bound) | Capacity::Weight(bound)) = policy.capacity;
            let listener_counters = Arc::clone(&counters);
            let mut builder = moka::future::Cache::builder()
                .name(&name)
                .max_capacity(bound)
                .expire_after(EntryExpiry {
                    time_to_idle: policy.time_to_idle,
                })
                .eviction_listener(move |_key, _slot, cause| match cause {
                    RemovalCause::Size => Counters::add(&listener_counters.evictions),
                    RemovalCause::Expired => Counters::add(&listener_counters.expirations),
                    RemovalCause::Explicit | RemovalCause::Replaced => {}
                });
            if let Some(weigher) = weigher {
                builder = builder.weigher(weigher);
            }
            Some(builder.build())
        };
        let name: Arc<str> = Arc::from(name.as_ref());
        let registration: Arc<super::registry::StatsFn> = {
            let (counters, store) = (Arc::clone(&counters), store.clone());
            Arc::new(move || stats_of(&counters, store.as_ref()))
        };
        super::registry::register(Arc::clone(&name), &registration);
        Ok(Self {
            name,
            policy: Arc::new(policy),
            counters,
            store,
            registration,
        })
    }

    /// The name given at construction.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// False when `CACHE_DISABLED` made this cache a pass-through.
    pub fn is_enabled(&self) -> bool {
        self.store.is_some()
    }

    /// The cached value for `key`, if there is one. A cached error counts as no value.
    pub async fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let found = match &self.store {
            Some(store) => store.get(key).await.and_then(|slot| match slot.content {
                Content::Value(value) => Some(value),
                Content::Error(_) => None,
            }),
            None => None,
        };
        Counters::add(if found.is_some() {
            &self.counters.hits
        } else {
            &self.counters.misses
        });
        found
    }

    /// Whether `key` has an entry (a value or a cached error). Unlike [`Cache::get`], it neither counts as a
    /// lookup nor resets the entry's idle time.
    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.store
            .as_ref()
            .is_some_and(|store| store.contains_key(key))
    }

    /// The cached value for `key`, or the result of `loader`, which is then cached.
    ///
    /// Concurrent calls for one missing key run one loader between them; the others wait for its result (its
    /// value, or its error). Errors are cached only with [`CachePolicy::negative_ttl`]; to cache only some of
    /// them, use [`Cache::get_or_try_load_with`].
    ///
    /// # Errors
    ///
    /// The loader's error, in an [`Arc`]: one failed load answers every caller that waited for it (and, with
    /// negative caching, every caller until it expires), so it is shared rather than cloned, and `E` need not be
    /// `Clone`. Match on it with `&*error`. The cache adds no error of its own: it cannot fail.
    pub async fn get_or_try_load<F>(&self, key: K, loader: F) -> Result<V, Arc<E>>
    where
        F: Future<Output = Result<V, E>>,
    {
        self.get_or_try_load_with(key, loader, |_| true).await
    }

    /// Like [`Cache::get_or_try_load`], but with negative caching on, an error is cached only if `cache_error`
    /// returns true for it: typically "not found" is cached and a timeout is not.
    pub async fn get_or_try_load_with<F, C>(
        &self,
        key: K,
        loader: F,
        cache_error: C,
    ) -> Result<V, Arc<E>>
    where
        F: Future<Output = Result<V, E>>,
        C: FnOnce(&E) -> bool,
    {
        self.get_or_try_load_lazy(key, move || loader, cache_error)
            .await
    }

    /// Like [`Cache::get_or_try_load_with`], but the loader is made by `make_loader`, and only on a miss: for
    /// lookups on every request. The future of this call then holds the closure, not the loader's whole state,
    /// and the miss runs on the heap; a hit moves a few hundred bytes instead of kilobytes (a loader that makes
    /// an HTTP call is that large), which on a request path is most of what a hit costs.
    pub async fn get_or_try_load_lazy<M, F, C>(
        &self,
        key: K,
        make_loader: M,
        cache_error: C,
    ) -> Result<V, Arc<E>>
    where
        M: FnOnce() -> F,
        F: Future<Output = Result<V, E>>,
        C: FnOnce(&E) -> bool,
    {
        let Some(store) = &self.store else {
            Counters::add(&self.counters.misses);
            return Box::pin(self.load(make_loader())).await.map_err(Arc::new);
        };
        // A first look separates hits from misses; `try_get_with` alone does not say whether it loaded.
        if let Some(slot) = store.get(&key).await {
            return match slot.content {
                Content::Value(value) => {
                    Counters::add(&self.counters.hits);
                    Ok(value)
                }
                Content::Error(error) => {
                    Counters::add(&self.counters.negative_hits);
                    Err(error)
                }
            };
        }
        Counters::add(&self.counters.misses);
        Box::pin(self.load_and_store(store, key, make_loader(), cache_error)).await
    }

    /// A miss: one loader for every concurrent caller of `key`, its result cached as the policy says.
    async fn load_and_store<F, C>(
        &self,
        store: &moka::future::Cache<K, Slot<V, E>>,
        key: K,
        loader: F,
        cache_error: C,
    ) -> Result<V, Arc<E>>
    where
        F: Future<Output = Result<V, E>>,
        C: FnOnce(&E) -> bool,
    {
        let init = async {
            match self.load(loader).await {
                Ok(value) => Ok(self.value_slot(value)),
                Err(error) => match self.policy.negative_ttl {
                    Some(negative_ttl) if cache_error(&error) => Ok(Slot {
                        ttl: jittered(negative_ttl, self.policy.ttl_jitter),
                        content: Content::Error(Arc::new(error)),
                    }),
                    _ => Err(error),
                },
            }
        };
        match store.try_get_with(key, init).await?.content {
            Content::Value(value) => Ok(value),
            Content::Error(error) => Err(error),
        }
    }

    /// Stores `value` for `key` with a fresh TTL, replacing any value or cached error.
    pub async fn insert(&self, key: K, value: V) {
        if let Some(store) = &self.store {
            store.insert(key, self.value_slot(value)).await;
        }
    }

    /// Removes `key` from this instance's cache. Other instances keep their copy until it expires.
    pub async fn invalidate<Q>(&self, key: &Q)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if let Some(store) = &self.store {
            store.invalidate(key).await;
        }
    }

    /// Removes every entry from this instance's cache.
    pub fn invalidate_all(&self) {
        if let Some(store) = &self.store {
            store.invalidate_all();
        }
    }

    /// Runs moka's pending housekeeping now: evictions, expirations and their counts. moka otherwise runs it
    /// during later operations; call it before reading [`CacheStats::entries`] when an exact figure matters.
    pub async fn run_pending_tasks(&self) {
        if let Some(store) = &self.store {
            store.run_pending_tasks().await;
        }
    }

    /// The counters and the current size.
    pub fn stats(&self) -> CacheStats {
        stats_of(&self.counters, self.store.as_ref())
    }

    async fn load(&self, loader: impl Future<Output = Result<V, E>>) -> Result<V, E> {
        Counters::add(&self.counters.loads);
        let result = loader.await;
        if result.is_err() {
            Counters::add(&self.counters.load_errors);
        }
        result
    }

    fn value_slot(&self, value: V) -> Slot<V, E> {
        Slot {
            ttl: jittered(self.policy.ttl, self.policy.ttl_jitter),
            content: Content::Value(value),
        }
    }
}

fn stats_of<K, V>(counters: &Counters, store: Option<&moka::future::Cache<K, V>>) -> CacheStats
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    let (entries, weighted_size) =
        store.map_or((0, 0), |store| (store.entry_count(), store.weighted_size()));
    counters.snapshot(entries, weighted_size)
}
