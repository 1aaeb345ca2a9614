//! `/settings/{key}`: shared, non-personal settings kept in the eHealth key-value store.
//!
//! - `GET` answers from a cache in front of the store (single-flight on misses, TTL 30 s with jitter): the
//!   value, its media type and its `ETag`; 404 when absent.
//! - `PUT` creates the key, or with `If-Match` updates it (412 when the tag is stale, 428 when the key exists
//!   and `If-Match` is missing). It invalidates this instance's cache entry; other instances see the new
//!   value when their entry expires, within the TTL (30 s, plus at most 10 % jitter).
//! - `DELETE` with `If-Match` deletes it.
//!
//! Who may call: every request needs a valid eHealth access token (verified by `telemed_kit::auth`: 401
//! otherwise, before the cache or the store is touched, so that a cached value is never handed to an
//! unauthenticated caller); `PUT` and `DELETE` also need the privilege `SETTINGS_WRITE_PRIVILEGE` (default
//! `Settings.write`: 403 naming it otherwise). Values are configuration shared by every user, never personal
//! data, so one cache entry may serve every authenticated caller.
//!
//! Every call to the store relays the caller's token, and it is the verified one: the verifier refuses a request
//! with more than one `Authorization` header, and the relay sends the request's only one. The store then
//! decides what the caller may do there.
//!
//! Upstream failures answer 503 (unreachable), 504 (too slow) or 502 (an error or a broken answer), log an
//! `alert` line each, and an `alarm` line when they persist ([`UpstreamHealth`]). They are counted per call to
//! the store, not per response: a cache hit is not evidence that the store is back, and one failed load that
//! answers many waiting requests is one failure.
//!
//! A `PUT` whose `Content-Length` is over 64 KiB is refused with 413 before its body is read, so that a client
//! cannot hold a handler by announcing a large body and sending it slowly, or never.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use telemed_kit::auth::{Caller, RequirePrivilegeLayer};
use telemed_kit::cache::{Cache, CachePolicy, Capacity};
use telemed_kit::config::Env;
use telemed_kit::http::Problem;
use telemed_kit::kvstore::{
    Auth, ETag, Entry, KvError, KvStore, KvStoreSettings, MAX_VALUE_BYTES, MediaType, valid_key,
};
use telemed_kit::{Service, ServiceError};

/// How long a cached setting may be served after it was read; the bound on staleness across instances.
const CACHE_TTL: Duration = Duration::from_secs(30);
/// Settings cached at most.
const CACHE_ENTRIES: u64 = 10_000;
/// Consecutive upstream failures after which an `alarm` line asks for manual action.
const ALARM_AFTER_FAILURES: u32 = 5;
/// The privilege writes need unless `SETTINGS_WRITE_PRIVILEGE` names another.
const DEFAULT_WRITE_PRIVILEGE: &str = "Settings.write";

/// The settings API's dependencies.
pub(crate) struct Settings {
    kvstore: KvStore,
    cache: Cache<String, Arc<Entry>, KvError>,
    upstream: Arc<UpstreamHealth>,
    write_privilege: String,
}

/// A privilege name as Keycloak roles are written: 1 to 128 visible ASCII characters, no spaces.
fn privilege(raw: &str) -> Option<String> {
    (!raw.is_empty() && raw.len() <= 128 && raw.bytes().all(|byte| byte.is_ascii_graphic()))
        .then(|| raw.to_owned())
}

impl Settings {
    /// Reads `KVSTORE_URL`, `KVSTORE_APPLICATION` and `SETTINGS_WRITE_PRIVILEGE`; the cache follows the kit's
    /// `CACHE_DISABLED`.
    pub(crate) fn from_env(env: &Env, service: &Service) -> Result<Self, ServiceError> {
        let kvstore = KvStore::new(
            KvStoreSettings::from_env(env, &service.settings().service)?,
            service.client(),
        );
        let policy = CachePolicy::new(Capacity::Entries(CACHE_ENTRIES), CACHE_TTL);
        let cache = Cache::new("settings", policy, &service.settings().cache).map_err(|error| {
            telemed_kit::ConfigError::invalid("CACHE_DISABLED", "", error.to_string())
        })?;
        let write_privilege = env
            .parse_with(
                "SETTINGS_WRITE_PRIVILEGE",
                "a privilege name such as Settings.write (1 to 128 visible ASCII characters, no spaces)",
                privilege,
            )?
            .unwrap_or_else(|| DEFAULT_WRITE_PRIVILEGE.to_owned());
        Ok(Self {
            kvstore,
            cache,
            upstream: Arc::new(UpstreamHealth::default()),
            write_privilege,
        })
    }

    /// The key-value store client (for the readiness check).
    pub(crate) fn kvstore(&self) -> &KvStore {
        &self.kvstore
    }

    /// The routes; tokens are verified by the `Auth` given to `Service::auth`.
    pub(crate) fn routes(self) -> Router {
        // Only writes take a body: reads, the hot path, skip the size check.
        let writes = put(write)
            .delete(remove)
            .route_layer(RequirePrivilegeLayer::new(self.write_privilege.clone()))
            .route_layer(middleware::from_fn(refuse_declared_oversize))
            .layer(DefaultBodyLimit::max(MAX_VALUE_BYTES));
        Router::new()
            .route("/settings/{key}", get(read).merge(writes))
            // Shared, not cloned field by field for every request.
            .with_state(Arc::new(self))
    }

    fn upstream_error(error: &KvError) -> Response {
        let status = match error {
            KvError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            KvError::Timeout => StatusCode::GATEWAY_TIMEOUT,
            _ => StatusCode::BAD_GATEWAY,
        };
        Problem::new(status)
            .detail("the settings store is not available")
            .into_response()
    }

    /// Invalidates this instance's entry for `key` (whatever happened, its copy may be stale now) and answers
    /// with `answer` on success, or the error's response.
    async fn after_write<T>(
        &self,
        key: &str,
        result: Result<T, KvError>,
        answer: impl FnOnce(T) -> Response,
    ) -> Response {
        self.upstream.record(&result);
        self.cache.invalidate(key).await;
        match result {
            Ok(value) => answer(value),
            Err(error) => Self::error(&error),
        }
    }

    /// The response for an error from the store: the client's own mistakes map to their statuses, the rest
    /// is the store's failure. Counting is [`UpstreamHealth::record`]'s job, done where the call is made.
    fn error(error: &KvError) -> Response {
        let (status, detail) = match error {
            KvError::InvalidKey => (StatusCode::BAD_REQUEST, "invalid key"),
            KvError::TooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "the value is larger than 64 KiB",
            ),
            KvError::NotFound => (StatusCode::NOT_FOUND, "no setting with this key"),
            KvError::Conflict => (
                StatusCode::PRECONDITION_FAILED,
                "the setting changed since it was read",
            ),
            KvError::AlreadyExists | KvError::PreconditionRequired => (
                StatusCode::PRECONDITION_REQUIRED,
                "updating a setting needs If-Match",
            ),
            KvError::Unauthorized => (StatusCode::UNAUTHORIZED, "not authenticated"),
            KvError::Forbidden => (StatusCode::FORBIDDEN, "not allowed"),
            _ => return Self::upstream_error(error),
        };
        Problem::new(status).detail(detail).into_response()
    }
}

/// Counts consecutive upstream failures: an `alert` line for each, one `alarm` line when they reach
/// [`ALARM_AFTER_FAILURES`], and a line when the store answers again.
#[derive(Debug, Default)]
pub(crate) struct UpstreamHealth {
    consecutive_failures: AtomicU32,
}

impl UpstreamHealth {
    /// Records the outcome of one call to the store: an answer within the contract (a value, 404, 412, ...)
    /// shows the store works; unreachable, too slow, a 5xx or a broken answer is a failure. Errors raised
    /// before anything was sent (an invalid key, a value too large) say nothing about the store.
    fn record<T>(&self, result: &Result<T, KvError>) {
        match result {
            Ok(_) => self.succeeded(),
            Err(KvError::InvalidKey | KvError::TooLarge) => {}
            Err(
                KvError::NotFound
                | KvError::AlreadyExists
                | KvError::Conflict
                | KvError::PreconditionRequired
                | KvError::Unauthorized
                | KvError::Forbidden,
            ) => self.succeeded(),
            Err(error) => self.failed(error),
        }
    }

    fn failed(&self, error: &KvError) {
        let failures = self.consecutive_failures.fetch_add(1, Ordering::AcqRel) + 1;
        telemed_kit::alert!(upstream = "kvstore", failures, error = %error, "key-value store call failed");
        if failures == ALARM_AFTER_FAILURES {
            telemed_kit::alarm!(
                upstream = "kvstore",
                failures,
                "key-value store failing persistently: {failures} calls in a row failed"
            );
        }
    }

    fn succeeded(&self) {
        let failures = self.consecutive_failures.swap(0, Ordering::AcqRel);
        if failures >= ALARM_AFTER_FAILURES {
            tracing::info!(
                upstream = "kvstore",
                failures,
                "key-value store answers again"
            );
        }
    }
}

/// 400 for an invalid key. (Tokens are checked before: by the `Caller` extractor for reads, by the privilege
/// layer for writes.)
fn invalid_key(key: &str) -> Option<Response> {
    (!valid_key(key)).then(|| {
        Problem::new(StatusCode::BAD_REQUEST)
            .detail("a key is 1 to 128 characters of A-Z a-z 0-9 . _ -")
            .into_response()
    })
}

fn entry_response(status: StatusCode, entry: &Entry) -> Response {
    (
        status,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(entry.media_type.as_str()),
            ),
            (header::ETAG, entry.etag.as_header().clone()),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        entry.value.clone(),
    )
        .into_response()
}

// `Caller` is extracted for its check alone: any valid token may read, and what a read returns does not depend
// on who asks.
async fn read(
    State(settings): State<Arc<Settings>>,
    _caller: Caller,
    Path(key): Path<String>,
) -> Response {
    if let Some(response) = invalid_key(&key) {
        return response;
    }
    // The loader borrows what it needs, and is made only on a miss: a hit clones nothing.
    let loaded = settings
        .cache
        .get_or_try_load_lazy(
            key.clone(),
            || async {
                let result = settings.kvstore.read(&key, Auth::Relay).await;
                settings.upstream.record(&result);
                result.map(Arc::new)
            },
            |_| true,
        )
        .await;
    match loaded {
        Ok(entry) => entry_response(StatusCode::OK, &entry),
        Err(error) => Settings::error(&error),
    }
}

async fn write(
    State(settings): State<Arc<Settings>>,
    Path(key): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(response) = invalid_key(&key) {
        return response;
    }
    let Some(media_type) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(MediaType::from_content_type)
    else {
        return Problem::new(StatusCode::UNSUPPORTED_MEDIA_TYPE)
            .detail("a setting is text/plain or application/json")
            .into_response();
    };
    if std::str::from_utf8(&body).is_err()
        || (media_type == MediaType::Json
            && serde_json::from_slice::<serde::de::IgnoredAny>(&body).is_err())
    {
        return Problem::new(StatusCode::BAD_REQUEST)
            .detail("the value is not valid UTF-8 text or JSON")
            .into_response();
    }
    let if_match = match headers
        .get(header::IF_MATCH)
        .map(|value| value.to_str().ok().and_then(ETag::parse))
    {
        None => None,
        Some(Some(etag)) => Some(etag),
        Some(None) => {
            return Problem::new(StatusCode::BAD_REQUEST)
                .detail("If-Match must be one entity tag as returned by GET")
                .into_response();
        }
    };
    let (result, status) = match &if_match {
        Some(etag) => (
            settings
                .kvstore
                .update(&key, body.clone(), media_type, etag, Auth::Relay)
                .await,
            StatusCode::OK,
        ),
        None => (
            settings
                .kvstore
                .create(&key, body.clone(), media_type, Auth::Relay)
                .await,
            StatusCode::CREATED,
        ),
    };
    settings
        .after_write(&key, result, |etag| {
            entry_response(
                status,
                &Entry {
                    value: body,
                    media_type,
                    etag,
                },
            )
        })
        .await
}

async fn remove(
    State(settings): State<Arc<Settings>>,
    Path(key): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Some(response) = invalid_key(&key) {
        return response;
    }
    let Some(if_match) = headers
        .get(header::IF_MATCH)
        .and_then(|value| value.to_str().ok())
        .and_then(ETag::parse)
    else {
        return Problem::new(StatusCode::PRECONDITION_REQUIRED)
            .detail("deleting a setting needs If-Match")
            .into_response();
    };
    let result = settings
        .kvstore
        .delete(&key, Some(&if_match), Auth::Relay)
        .await;
    settings
        .after_write(&key, result, |()| StatusCode::NO_CONTENT.into_response())
        .await
}

/// 413 for a request that announces a body over the limit, before anything reads it: the body limit alone
/// only trips once that much has arrived, and a client that announces a large body and sends it slowly, or
/// never, would hold the handler until it gave up.
async fn refuse_declared_oversize(request: Request, next: Next) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > MAX_VALUE_BYTES as u64) {
        return Problem::new(StatusCode::PAYLOAD_TOO_LARGE)
            .detail("the value is larger than 64 KiB")
            .into_response();
    }
    next.run(request).await
}
