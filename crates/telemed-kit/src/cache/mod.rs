//! Bounded in-memory caches in front of slow shared data, safe to run on every instance.
//!
//! A [`Cache`] keeps the answers of a loader (a FHIR read, a key-value store read) for a while, so that
//! repeated requests do not repeat the call. It is built on moka's future cache, and adds what the platform's
//! rules ask of a cache (R2: every instance can serve every request, the cache is only an optimisation, with a
//! sane refresh and clean-up strategy):
//! - a required size bound ([`Capacity`]), so memory stays bounded whatever keys requests bring;
//! - a TTL with jitter ([`CachePolicy::ttl_jitter`]), so staleness is bounded and entries loaded together do not
//!   all expire together; an optional time-to-idle to drop keys nobody asks for;
//! - single-flight loading: concurrent misses for one key run one load ([`Cache::get_or_try_load`]);
//! - optional negative caching of loader errors with its own short TTL;
//! - counters ([`CacheStats`]) for metrics;
//! - `CACHE_DISABLED` ([`CacheSettings`]), which makes every cache a pass-through.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use telemed_kit::cache::{Cache, CachePolicy, CacheSettings, Capacity};
//! use telemed_kit::config::Env;
//!
//! #[derive(Debug, thiserror::Error)]
//! #[error("code system {0} not found")]
//! struct NotFound(String);
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let settings = CacheSettings::from_env(&Env::process())?;
//! let policy = CachePolicy::new(Capacity::Entries(1_000), Duration::from_secs(300))
//!     .with_negative_ttl(Duration::from_secs(10));
//! let code_systems: Cache<String, Arc<str>, NotFound> = Cache::new("code-systems", policy, &settings)?;
//!
//! let url = "http://loinc.org".to_owned();
//! let display = code_systems
//!     .get_or_try_load(url.clone(), async { Ok(Arc::from("LOINC")) })
//!     .await?;
//! assert_eq!(&*display, "LOINC");
//! // The second lookup is served from memory: the loader is not run.
//! let again = code_systems
//!     .get_or_try_load(url, async { Err(NotFound("unreachable".into())) })
//!     .await?;
//! assert_eq!(&*again, "LOINC");
//! assert_eq!(code_systems.stats().loads, 1);
//! # Ok(())
//! # }
//! ```
//!
//! # What may be cached
//!
//! Only shared, non-personal data: terminology, code systems, organisations, plan definitions, configuration
//! from the key-value store (whose keys and values must hold no clinical or personal data in the first place).
//! Never the only copy of anything (R1): a cache holds copies of data owned by an infrastructure service, and
//! losing it on a restart costs only time.
//!
//! Data that belongs to one user (a patient's observations, what a practitioner may see) should normally not
//! be cached at all. If it is, the key must contain the subject of the caller's access token, for example
//! `(subject, resource_id)`, so that one user's entry can never answer another user's request: the
//! infrastructure's access decision was made for that subject only. A key without the subject is a data leak.
//! Nothing in the cache is ever a session (R3).
//!
//! # How instances converge
//!
//! Each instance has its own cache; nothing is shared or synchronised between them (R9: any instance can be
//! moved or restarted, and any instance can answer any request). So:
//! - A value is at most one TTL (plus its jitter) older than its source, on every instance.
//! - [`Cache::invalidate`] and [`Cache::insert`] after a write affect only the instance that made the write.
//!   The others keep serving their copy until it expires; the TTL is the convergence time, and should be chosen
//!   as "how stale may an answer be".
//! - Jitter spreads each entry's lifetime over `ttl * (1 ± jitter)`, so instances that loaded the same data at
//!   the same moment (a rollout, a burst) reload it at different moments instead of all at once.
//!
//! # Memory
//!
//! Every cache has a bound: a number of entries, or a total weight measured by a weigher ([`Cache::weighted`]).
//! moka enforces it in its housekeeping, which runs during cache operations (there is no background thread), so
//! the count can briefly exceed the bound by what arrived since the last housekeeping. The benchmark in
//! `crates/telemed-kit/benches/cache_memory.rs` (results in `docs/cache.md`) shows memory levelling off with a
//! stream of distinct keys.
//!
//! # Readiness and disabling
//!
//! A cache never takes part in readiness: an empty cache only makes requests slower. For the same reason
//! `CACHE_DISABLED=true` may be set at any time: every cache then calls its loader on every lookup and stores
//! nothing, which lets the test suite show the service behaves the same without caches.
//!
//! # Choices
//!
//! - Errors come back as `Arc<E>` (moka's type): one failed load answers every caller that waited for it, so it
//!   is shared rather than cloned. `E` is a type parameter of the cache, so that a cached error comes back
//!   typed.
//! - The TTL and time-to-idle are enforced by one per-entry expiry policy rather than moka's builder settings,
//!   because each entry carries its own jittered TTL (see the `expiry` module's notes).
//! - moka reads the system clock and offers no way to substitute one, so `tokio::time::pause` does not move its
//!   time; expiry tests use short real TTLs and poll, while the jitter itself is tested as a pure function.

mod expiry;
mod registry;
mod settings;
mod stats;
mod store;

#[cfg(test)]
mod tests;

pub use registry::all_stats;
pub use settings::{CachePolicy, CacheSettings, Capacity, PolicyError};
pub use stats::CacheStats;
pub use store::{Cache, ERROR_ENTRY_WEIGHT};
