//! Run with: `cargo run -p example-cache`, then `curl localhost:8080/codes/8867-4` twice and
//! `curl localhost:8080/stats`
//!
//! `GET /codes/{code}` looks a code's display name up in a slow source (a stand-in for a terminology server)
//! through a [`Cache`]. The cache is only an optimisation (R2): every instance can answer every request, and a
//! restart costs only time. What the policy chooses:
//! - a size bound (10 000 entries), so that codes from requests cannot grow memory without limit;
//! - a TTL of 5 minutes: how stale a display name may be, and how long until all instances agree again;
//! - "not found" cached for 10 seconds, so that a burst of requests for an unknown code reaches the source
//!   once, while a code added at the source shows up soon.
//!
//! Concurrent misses for one code share one load. `CACHE_DISABLED=true` turns the cache into a pass-through:
//! the service answers the same, only slower. `GET /stats` shows the cache's counters.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use telemed_kit::Service;
use telemed_kit::cache::{Cache, CachePolicy, CacheSettings, Capacity};
use telemed_kit::config::Env;
use telemed_kit::http::Problem;

/// Why a code could not be looked up.
#[derive(Debug, thiserror::Error)]
enum LookupError {
    #[error("no such code")]
    NotFound,
}

/// The slow source: a terminology server, here a fixed table behind a delay. It counts its calls, so that
/// `/stats` can show what the cache spared it.
#[derive(Default)]
struct Terminology {
    calls: AtomicU64,
}

impl Terminology {
    async fn display(&self, code: &str) -> Result<Arc<str>, LookupError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(50)).await;
        match code {
            "8867-4" => Ok("Heart rate".into()),
            "8480-6" => Ok("Systolic blood pressure".into()),
            _ => Err(LookupError::NotFound),
        }
    }
}

#[derive(Clone)]
struct Codes {
    cache: Cache<String, Arc<str>, LookupError>,
    source: Arc<Terminology>,
}

async fn display(State(codes): State<Codes>, Path(code): Path<String>) -> Response {
    let source = codes.source.clone();
    let lookup = code.clone();
    // Lazy: on every request, so that a hit does not carry the loader's state (docs/cache.md).
    let loaded = codes
        .cache
        .get_or_try_load_lazy(
            code,
            || async move { source.display(&lookup).await },
            |_| true,
        )
        .await;
    match loaded {
        Ok(display) => Json(serde_json::json!({ "display": &*display })).into_response(),
        Err(error) => match *error {
            LookupError::NotFound => Problem::new(StatusCode::NOT_FOUND)
                .detail("no such code")
                .into_response(),
        },
    }
}

async fn stats(State(codes): State<Codes>) -> Json<serde_json::Value> {
    let stats = codes.cache.stats();
    Json(serde_json::json!({
        "enabled": codes.cache.is_enabled(),
        "hits": stats.hits,
        "negative_hits": stats.negative_hits,
        "loads": stats.loads,
        "source_calls": codes.source.calls.load(Ordering::Relaxed),
    }))
}

#[tokio::main]
async fn main() -> ExitCode {
    let service =
        Service::from_env(telemed_kit::service_info!()).unwrap_or_else(|error| error.exit());
    let settings = CacheSettings::from_env(&Env::process()).unwrap_or_else(|error| error.exit());
    let policy = CachePolicy::new(Capacity::Entries(10_000), Duration::from_secs(300))
        .with_negative_ttl(Duration::from_secs(10));
    // The policy is fixed in code, so an invalid one is a programming error found by the first test run; it is
    // still reported as a startup failure rather than a panic.
    let cache = match Cache::new("codes", policy, &settings) {
        Ok(cache) => cache,
        Err(error) => {
            telemed_kit::tracing::error!(%error, "invalid cache policy");
            return ExitCode::FAILURE;
        }
    };
    let codes = Codes {
        cache,
        source: Arc::default(),
    };
    let app = Router::new()
        .route("/codes/{code}", get(display))
        .route("/stats", get(stats))
        .with_state(codes);
    service.run(app).await
}
