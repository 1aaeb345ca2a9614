//! What a cache may hold and for how long: the kit-wide switch read from the environment ([`CacheSettings`]) and
//! the per-cache bounds a service chooses in code ([`CachePolicy`]).

use std::time::Duration;

use crate::config::{ConfigError, Env};

/// The kit-wide cache configuration, read from the environment once at startup.
///
/// Sizes and lifetimes are not here: they belong to the data being cached, so each service states them in code
/// with a [`CachePolicy`], next to the loader whose cost and staleness they trade off. An operator can only turn
/// caching off, which is safe at any time because every cache is an optimisation (R2).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheSettings {
    /// `CACHE_DISABLED`: turns every [`Cache`](super::Cache) into a pass-through that calls its loader on every
    /// request and stores nothing, so that a test run (or an incident) can show the service behaves the same
    /// without its caches. Defaults to false.
    pub disabled: bool,
}

impl CacheSettings {
    /// Reads `CACHE_DISABLED`.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            disabled: env.bool_or("CACHE_DISABLED", false)?,
        })
    }
}

/// The memory bound of one cache. There is no unbounded cache: a bound is the only thing that keeps a cache
/// keyed by request data from growing until the container is killed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capacity {
    /// At most this many entries. Suits values of similar size.
    Entries(u64),
    /// At most this total weight, in the unit the weigher given to [`Cache::weighted`](super::Cache::weighted)
    /// returns (normally bytes). Suits values whose sizes vary widely.
    Weight(u64),
}

/// The bounds of one cache: its size and how long an entry may be served.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use telemed_kit::cache::{CachePolicy, Capacity};
///
/// let policy = CachePolicy::new(Capacity::Entries(10_000), Duration::from_secs(300))
///     .with_time_to_idle(Duration::from_secs(60))
///     .with_negative_ttl(Duration::from_secs(5));
/// assert_eq!(policy.ttl_jitter, 0.1);
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct CachePolicy {
    /// The size bound. Required: there is no default.
    pub capacity: Capacity,
    /// How long a loaded or inserted value is served before it is loaded again: the upper bound on how stale an
    /// answer can be, and the time after which all instances agree again. Required: there is no default.
    pub ttl: Duration,
    /// Each entry's lifetime is drawn uniformly from `ttl * (1 ± ttl_jitter)`, so that entries loaded together
    /// (at startup, or by every instance after the same event) do not all expire and reload in the same instant.
    /// From 0 (no jitter) to 0.5. Defaults to 0.1.
    pub ttl_jitter: f64,
    /// An entry not read for this long expires even if its TTL has not run out, which frees memory held by keys
    /// nobody asks for any more. It never extends an entry beyond its TTL. Defaults to none.
    pub time_to_idle: Option<Duration>,
    /// When set, a loader's error is cached for this long (with the same jitter) and returned to every caller
    /// of that key meanwhile, instead of each caller loading again: use it for "not found" answers, and keep it
    /// short. When not set, errors are never cached. Defaults to none.
    pub negative_ttl: Option<Duration>,
}

impl CachePolicy {
    /// The default jitter: ±10 %.
    pub const DEFAULT_TTL_JITTER: f64 = 0.1;
    /// The largest jitter accepted: beyond ±50 % the TTL stops meaning much.
    pub const MAX_TTL_JITTER: f64 = 0.5;
    /// The longest TTL, time-to-idle or negative TTL accepted. A cache that serves day-old data is a database
    /// (R1, R3); this limit also keeps every expiry time far from overflow.
    pub const MAX_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);

    /// A policy with the two required bounds and the defaults for everything else.
    pub fn new(capacity: Capacity, ttl: Duration) -> Self {
        Self {
            capacity,
            ttl,
            ttl_jitter: Self::DEFAULT_TTL_JITTER,
            time_to_idle: None,
            negative_ttl: None,
        }
    }

    /// Sets [`ttl_jitter`](Self::ttl_jitter).
    #[must_use]
    pub fn with_ttl_jitter(mut self, jitter: f64) -> Self {
        self.ttl_jitter = jitter;
        self
    }

    /// Sets [`time_to_idle`](Self::time_to_idle).
    #[must_use]
    pub fn with_time_to_idle(mut self, time_to_idle: Duration) -> Self {
        self.time_to_idle = Some(time_to_idle);
        self
    }

    /// Sets [`negative_ttl`](Self::negative_ttl), which turns negative caching on.
    #[must_use]
    pub fn with_negative_ttl(mut self, negative_ttl: Duration) -> Self {
        self.negative_ttl = Some(negative_ttl);
        self
    }

    /// Checks every bound; [`Cache::new`](super::Cache::new) calls it, so a bad policy fails at startup.
    pub fn validate(&self) -> Result<(), PolicyError> {
        let bound = match self.capacity {
            Capacity::Entries(bound) | Capacity::Weight(bound) => bound,
        };
        if bound == 0 {
            return Err(PolicyError::ZeroCapacity);
        }
        check_lifetime("ttl", self.ttl)?;
        if let Some(time_to_idle) = self.time_to_idle {
            check_lifetime("time_to_idle", time_to_idle)?;
        }
        if let Some(negative_ttl) = self.negative_ttl {
            check_lifetime("negative_ttl", negative_ttl)?;
        }
        if !(0.0..=Self::MAX_TTL_JITTER).contains(&self.ttl_jitter) {
            return Err(PolicyError::Jitter(self.ttl_jitter));
        }
        Ok(())
    }
}

fn check_lifetime(field: &'static str, value: Duration) -> Result<(), PolicyError> {
    if value.is_zero() || value > CachePolicy::MAX_LIFETIME {
        return Err(PolicyError::Lifetime { field, value });
    }
    Ok(())
}

/// A [`CachePolicy`] that cannot be used. Raised when the cache is built, at startup.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// A capacity of 0 would cache nothing; `CACHE_DISABLED` is the way to run without a cache.
    #[error("cache capacity must be at least 1; set CACHE_DISABLED=true to run without caches")]
    ZeroCapacity,
    /// A TTL, time-to-idle or negative TTL is zero or longer than [`CachePolicy::MAX_LIFETIME`].
    #[error("cache {field} of {} must be more than 0 and at most 24h", humantime::format_duration(*.value))]
    Lifetime {
        /// The policy field.
        field: &'static str,
        /// Its value.
        value: Duration,
    },
    /// The jitter is outside 0 to [`CachePolicy::MAX_TTL_JITTER`].
    #[error("cache ttl_jitter of {0} must be from 0 to 0.5")]
    Jitter(f64),
    /// [`Capacity::Weight`] was given to [`Cache::new`](super::Cache::new), which has no weigher to measure it.
    #[error("a cache bounded by weight needs a weigher: build it with Cache::weighted")]
    WeigherMissing,
    /// [`Capacity::Entries`] was given to [`Cache::weighted`](super::Cache::weighted), which would ignore the
    /// weigher.
    #[error("a cache bounded by entries does not use a weigher: build it with Cache::new")]
    WeigherUnused,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_disabled_is_read_and_defaults_to_false() {
        let off = CacheSettings::from_env(&Env::from_pairs([("CACHE_DISABLED", "true")])).unwrap();
        assert!(off.disabled);
        let on = CacheSettings::from_env(&Env::from_pairs::<&str, &str>([])).unwrap();
        assert!(!on.disabled);
        let error =
            CacheSettings::from_env(&Env::from_pairs([("CACHE_DISABLED", "maybe")])).unwrap_err();
        assert_eq!(
            error.to_string(),
            r#"CACHE_DISABLED="maybe": expected true or false"#
        );
    }

    #[test]
    fn every_unusable_bound_is_rejected_by_name() {
        let base = CachePolicy::new(Capacity::Entries(10), Duration::from_secs(60));
        assert_eq!(base.validate(), Ok(()));
        let cases = [
            (
                CachePolicy::new(Capacity::Weight(0), Duration::from_secs(1)),
                "capacity",
            ),
            (
                CachePolicy::new(Capacity::Entries(1), Duration::ZERO),
                "ttl of 0s",
            ),
            (
                CachePolicy::new(Capacity::Entries(1), Duration::from_secs(90_000)),
                "ttl of 1day 1h",
            ),
            (
                base.clone().with_time_to_idle(Duration::ZERO),
                "time_to_idle",
            ),
            (
                base.clone().with_negative_ttl(Duration::from_secs(100_000)),
                "negative_ttl",
            ),
            (base.clone().with_ttl_jitter(0.6), "ttl_jitter of 0.6"),
            (base.clone().with_ttl_jitter(-0.1), "ttl_jitter of -0.1"),
            (base.clone().with_ttl_jitter(f64::NAN), "ttl_jitter of NaN"),
        ];
        for (policy, expected) in cases {
            let error = policy.validate().unwrap_err().to_string();
            assert!(error.contains(expected), "{error} lacks {expected}");
        }
    }
}
