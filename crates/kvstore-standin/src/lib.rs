//! An in-memory stand-in for the eHealth key-value store, for tests and local development only.
//!
//! The real store's API description is not published, so this crate fixes the contract the kit's client
//! follows, and answers it over real HTTP so that client tests exercise real requests, real status codes and
//! real faults (a delayed answer, a dropped connection). The contract, summarised (the full version, with
//! examples, is `docs/kvstore.md`):
//!
//! | request | answers |
//! |---|---|
//! | `GET /properties/{application}/{key}` | 200 with the stored body, its `Content-Type` and `ETag`; 404 |
//! | `POST /properties/{application}/{key}` (create) | 201 with `ETag` and `Location`; 409 if it exists |
//! | `PUT /properties/{application}/{key}` (update, `If-Match` required) | 200 with the new `ETag`; 404; 412; 428 |
//! | `DELETE /properties/{application}/{key}` (`If-Match` optional) | 204; 404; 412 |
//!
//! - Every request needs `Authorization: Bearer <token>`: missing or malformed gives 401 with
//!   `WWW-Authenticate: Bearer`. The token `forbidden` gives 403: a test hook, the stand-in checks nothing else.
//! - `{application}` and `{key}` are 1 to 128 characters of `A-Z a-z 0-9 . _ -`, and not `.` or `..`; anything
//!   else gives 400.
//! - A written value's `Content-Type` is `text/plain` or `application/json`, optionally with `charset=utf-8`;
//!   anything else (or none) gives 415. Bodies are UTF-8, a JSON body must parse, and a body is at most 64 KiB
//!   ([`MAX_VALUE_BYTES`]): otherwise 400 or 413. `GET` returns the `Content-Type` exactly as it was written.
//! - `ETag`s are opaque quoted strings, new on every write and never reused (not even after a delete or a
//!   reset). `If-Match` takes `*` or a list of quoted tags, compared strongly (`W/` tags never match).
//! - A write is atomic: the whole body is received and checked before the value is replaced in one step under
//!   a lock, so a reader sees the old or the new value, never a mix, and of two updates carrying the same
//!   `ETag` exactly one succeeds.
//! - Checks run in this order: authorization (401, 403), path (400), method (405), `If-Match` present on `PUT`
//!   (428), media type (415), size (413), body (400), `If-Match` syntax (400), then the stored state (404, 409,
//!   412). Every error body is `application/problem+json` (RFC 9457).
//!
//! # Test hooks
//!
//! Under `/_standin/`, without authorization, and never counted or faulted:
//! - `GET /_standin/stats`: [`Stats`], the requests received per method and per path.
//! - `POST /_standin/reset`: forgets every value, count and fault (204).
//! - `PUT /_standin/faults` with a [`Faults`] JSON body: from then on, requests to `/properties/` are delayed
//!   and/or fail, for the next `count` requests or until cleared. `GET` shows the active faults, `DELETE` clears
//!   them.
//!
//! # Example
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! use kvstore_standin::StandIn;
//!
//! let standin = StandIn::new();
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let url = format!("http://{}", listener.local_addr()?);
//! tokio::spawn(axum::serve(listener, standin.router()).into_future());
//! // ... point the client under test at `url`, then:
//! assert_eq!(standin.stats().total, 0);
//! # Ok(())
//! # }
//! ```
//!
//! # Never in production
//!
//! The stand-in is a crate of its own, which services take as a dev-dependency only, and its binary is not part
//! of the container image or the chart. It keeps everything in memory, checks no token, and its hooks let anyone
//! inject faults.

#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![deny(unreachable_pub)]

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, RandomState};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use bytes::Bytes;
use http::header::{
    ALLOW, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, ETAG, IF_MATCH, LOCATION, WWW_AUTHENTICATE,
};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, Limited};
use serde::{Deserialize, Serialize};

/// The largest value accepted, in bytes: 64 KiB. The store is for small configuration values.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;
/// The longest `{application}` or `{key}` accepted.
pub const MAX_NAME_LENGTH: usize = 128;
/// The longest delay a fault may ask for.
pub const MAX_FAULT_DELAY: Duration = Duration::from_secs(60);
/// The bearer token that is refused with 403, so that tests can provoke it.
pub const FORBIDDEN_TOKEN: &str = "forbidden";

const PROBLEM_JSON: &str = "application/problem+json";

/// Builds the stand-in's routes with a fresh, empty store.
pub fn router() -> Router {
    StandIn::new().router()
}

/// The stand-in's state: values, request counts and faults. Clones share it.
///
/// A test that serves [`StandIn::router`] can keep a clone to read [`StandIn::stats`] or set
/// [`StandIn::set_faults`] directly instead of through the HTTP hooks.
#[derive(Clone, Debug, Default)]
pub struct StandIn {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    values: Mutex<HashMap<(String, String), Stored>>,
    stats: Mutex<Stats>,
    faults: Mutex<Option<Faults>>,
    /// Distinguishes this stand-in's `ETag`s from any other instance's.
    etag_prefix: u32,
    /// Never reset, so that no `ETag` is ever handed out twice.
    etag_counter: AtomicU64,
}

impl Default for Inner {
    fn default() -> Self {
        Self {
            values: Mutex::default(),
            stats: Mutex::default(),
            faults: Mutex::default(),
            etag_prefix: RandomState::new().hash_one(0_u8) as u32,
            etag_counter: AtomicU64::new(0),
        }
    }
}

#[derive(Debug, Clone)]
struct Stored {
    body: Bytes,
    content_type: HeaderValue,
    etag: HeaderValue,
}

/// Requests received under `/properties/`, as `GET /_standin/stats` returns them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Stats {
    /// Every request, whatever its answer (rejected, faulted or served).
    pub total: u64,
    /// Requests per method.
    pub by_method: BTreeMap<String, u64>,
    /// Requests per path (as sent, still percent-encoded), then per method.
    pub by_path: BTreeMap<String, BTreeMap<String, u64>>,
}

impl Stats {
    /// Requests with `method` to `path`.
    pub fn count(&self, method: &str, path: &str) -> u64 {
        self.by_path
            .get(path)
            .and_then(|methods| methods.get(method))
            .copied()
            .unwrap_or(0)
    }
}

/// Faults applied to requests under `/properties/`, set with `PUT /_standin/faults`.
///
/// `{"delay_ms": 500}` delays every request by 500 ms; `{"failure": "reset", "count": 2}` drops the connection
/// of the next two requests; `{"delay_ms": 200, "failure": "error"}` answers 500 after 200 ms until cleared.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Faults {
    /// Wait this long before answering (or failing). At most 60000 ([`MAX_FAULT_DELAY`]). Defaults to 0.
    #[serde(default)]
    pub delay_ms: u64,
    /// How the request fails, after the delay; the request is not applied. Defaults to none: it is served.
    #[serde(default)]
    pub failure: Option<Failure>,
    /// Apply to this many requests, then clear. Counts down in `GET /_standin/faults`. Defaults to none:
    /// until cleared.
    #[serde(default)]
    pub count: Option<u64>,
}

impl Faults {
    /// Faults that delay every request by `delay`.
    pub fn delay(delay: Duration) -> Self {
        Self {
            delay_ms: u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            ..Self::default()
        }
    }

    /// Faults that fail every request with `failure`.
    pub fn failure(failure: Failure) -> Self {
        Self {
            failure: Some(failure),
            ..Self::default()
        }
    }

    /// Limits the faults to the next `count` requests.
    #[must_use]
    pub fn times(mut self, count: u64) -> Self {
        self.count = Some(count);
        self
    }

    fn validate(&self) -> Result<(), String> {
        if Duration::from_millis(self.delay_ms) > MAX_FAULT_DELAY {
            return Err(format!(
                "delay_ms must be at most {}",
                MAX_FAULT_DELAY.as_millis()
            ));
        }
        if self.count == Some(0) {
            return Err("count must be at least 1; omit it to apply until cleared".to_owned());
        }
        Ok(())
    }
}

/// How a faulted request fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Failure {
    /// The connection is closed without any response byte (on HTTP/2, the stream is reset). Not for `HEAD`:
    /// hyper sends a `HEAD` answer's head without reading its body, which is where the reset happens, so a
    /// `HEAD` gets the normal answer (a readiness probe by `HEAD` does not see this fault).
    Reset,
    /// `500 Internal Server Error` with a problem body.
    Error,
    /// `200 OK` with `Content-Type: application/json`, a body that is not JSON, and no `ETag`.
    InvalidBody,
    /// `403 Forbidden` with a problem body: the store refusing a caller whose token is valid, as the real store
    /// judges privileges of its own.
    Forbidden,
}

impl StandIn {
    /// An empty stand-in.
    pub fn new() -> Self {
        Self::default()
    }

    /// The routes: `/properties/{application}/{key}` and the `/_standin/` hooks. Unknown paths get a 404
    /// problem.
    pub fn router(&self) -> Router {
        let properties = Router::new()
            .route("/properties/{application}/{key}", any(property))
            .layer(middleware::from_fn_with_state(
                self.clone(),
                count_and_fault,
            ));
        let hooks = Router::new()
            .route("/_standin/stats", get(stats))
            .route("/_standin/reset", post(reset))
            .route(
                "/_standin/faults",
                get(get_faults).put(put_faults).delete(clear_faults),
            );
        properties
            .merge(hooks)
            .fallback(not_found)
            .with_state(self.clone())
    }

    /// The requests counted so far.
    pub fn stats(&self) -> Stats {
        lock(&self.inner.stats).clone()
    }

    /// Replaces the active faults.
    pub fn set_faults(&self, faults: Faults) {
        *lock(&self.inner.faults) = Some(faults);
    }

    /// Clears the active faults.
    pub fn clear_faults(&self) {
        *lock(&self.inner.faults) = None;
    }

    /// Forgets every value, count and fault. `ETag`s keep counting, so an old tag never matches a new value.
    pub fn reset(&self) {
        lock(&self.inner.values).clear();
        *lock(&self.inner.stats) = Stats::default();
        self.clear_faults();
    }

    fn next_etag(&self) -> HeaderValue {
        let n = self.inner.etag_counter.fetch_add(1, Ordering::Relaxed) + 1;
        let tag = format!("\"{:08x}-{n}\"", self.inner.etag_prefix);
        // Hex digits, a dash and decimal digits between quotes: always a valid header value.
        HeaderValue::from_str(&tag).unwrap_or_else(|_| HeaderValue::from_static("\"0\""))
    }

    /// Takes the faults for one request, counting it down.
    fn take_fault(&self) -> Option<Faults> {
        let mut active = lock(&self.inner.faults);
        let faults = active.clone()?;
        match faults.count {
            // 0 only arrives through `set_faults`, which does not validate: it applies once, like 1.
            Some(0 | 1) => *active = None,
            Some(n) => {
                if let Some(active) = active.as_mut() {
                    active.count = Some(n - 1);
                }
            }
            None => {}
        }
        Some(faults)
    }
}

/// A lock whose holder never panics while holding it; should one have, the data is still consistent (every
/// update is one assignment), so poisoning is ignored.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn count_and_fault(State(standin): State<StandIn>, request: Request, next: Next) -> Response {
    {
        let method = request.method().as_str().to_owned();
        let path = request.uri().path().to_owned();
        let mut stats = lock(&standin.inner.stats);
        stats.total += 1;
        *stats.by_method.entry(method.clone()).or_default() += 1;
        *stats
            .by_path
            .entry(path)
            .or_default()
            .entry(method)
            .or_default() += 1;
    }
    let Some(faults) = standin.take_fault() else {
        return next.run(request).await;
    };
    if faults.delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(faults.delay_ms)).await;
    }
    match faults.failure {
        None => next.run(request).await,
        Some(Failure::Error) => problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            "fault injected by the stand-in",
        )
        .into_response(),
        Some(Failure::InvalidBody) => (
            [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
            r#"{"value": "#,
        )
            .into_response(),
        Some(Failure::Reset) => Response::new(Body::new(ResetBody)),
        Some(Failure::Forbidden) => {
            problem(StatusCode::FORBIDDEN, "fault injected by the stand-in").into_response()
        }
    }
}

/// A body that fails before yielding anything. hyper then abandons the connection before flushing the
/// response head it has buffered, so the client receives no byte of a response (HTTP/1), or a reset stream
/// (HTTP/2): the closest a handler can get to a dropped connection.
struct ResetBody;

impl http_body::Body for ResetBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        Poll::Ready(Some(Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "fault injected by the stand-in: connection reset",
        ))))
    }
}

async fn property(
    State(standin): State<StandIn>,
    method: Method,
    path: Result<Path<(String, String)>, axum::extract::rejection::PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    handle_property(&standin, method, path, &headers, body)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn handle_property(
    standin: &StandIn,
    method: Method,
    path: Result<Path<(String, String)>, axum::extract::rejection::PathRejection>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, Problem> {
    authorize(headers)?;
    let Path((application, key)) = path.map_err(|_| {
        problem(
            StatusCode::BAD_REQUEST,
            "the path must be /properties/{application}/{key} in UTF-8",
        )
    })?;
    check_name("application", &application)?;
    check_name("key", &key)?;
    let id = (application, key);
    match method {
        Method::GET | Method::HEAD => read(standin, &id),
        Method::POST => {
            let (content_type, body) = read_value(headers, body).await?;
            create(standin, id, content_type, body)
        }
        Method::PUT => {
            if !headers.contains_key(IF_MATCH) {
                return Err(problem(
                    StatusCode::PRECONDITION_REQUIRED,
                    "an update needs If-Match with the ETag of the value it replaces",
                ));
            }
            let (content_type, body) = read_value(headers, body).await?;
            let condition = if_match(headers)?;
            update(standin, &id, &condition, content_type, body)
        }
        Method::DELETE => {
            let condition = if_match(headers)?;
            delete(standin, &id, &condition)
        }
        _ => Err(problem(
            StatusCode::METHOD_NOT_ALLOWED,
            "use GET, POST, PUT or DELETE",
        )
        .with_header(ALLOW, "GET, HEAD, POST, PUT, DELETE")),
    }
}

fn read(standin: &StandIn, id: &(String, String)) -> Result<Response, Problem> {
    let stored = lock(&standin.inner.values)
        .get(id)
        .cloned()
        .ok_or_else(absent)?;
    Ok((
        [(CONTENT_TYPE, stored.content_type), (ETAG, stored.etag)],
        stored.body,
    )
        .into_response())
}

fn create(
    standin: &StandIn,
    id: (String, String),
    content_type: HeaderValue,
    body: Bytes,
) -> Result<Response, Problem> {
    let location = HeaderValue::from_str(&format!("/properties/{}/{}", id.0, id.1))
        .map_err(|_| problem(StatusCode::BAD_REQUEST, "invalid path"))?;
    let mut values = lock(&standin.inner.values);
    if values.contains_key(&id) {
        return Err(problem(
            StatusCode::CONFLICT,
            "the key exists: update it with PUT and If-Match",
        ));
    }
    let etag = standin.next_etag();
    values.insert(
        id,
        Stored {
            body,
            content_type,
            etag: etag.clone(),
        },
    );
    Ok((StatusCode::CREATED, [(ETAG, etag), (LOCATION, location)]).into_response())
}

fn update(
    standin: &StandIn,
    id: &(String, String),
    condition: &Condition,
    content_type: HeaderValue,
    body: Bytes,
) -> Result<Response, Problem> {
    let mut values = lock(&standin.inner.values);
    let stored = values.get_mut(id).ok_or_else(absent)?;
    condition.check(&stored.etag)?;
    let etag = standin.next_etag();
    *stored = Stored {
        body,
        content_type,
        etag: etag.clone(),
    };
    Ok((StatusCode::OK, [(ETAG, etag)]).into_response())
}

fn delete(
    standin: &StandIn,
    id: &(String, String),
    condition: &Condition,
) -> Result<Response, Problem> {
    let mut values = lock(&standin.inner.values);
    let stored = values.get(id).ok_or_else(absent)?;
    condition.check(&stored.etag)?;
    values.remove(id);
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn absent() -> Problem {
    problem(StatusCode::NOT_FOUND, "no value is stored under this key")
}

fn authorize(headers: &HeaderMap) -> Result<(), Problem> {
    let unauthorized = |detail: &'static str, challenge: &'static str| {
        problem(StatusCode::UNAUTHORIZED, detail).with_header(WWW_AUTHENTICATE, challenge)
    };
    let Some(value) = headers.get(AUTHORIZATION) else {
        return Err(unauthorized(
            "Authorization: Bearer <token> is required",
            r#"Bearer realm="kvstore""#,
        ));
    };
    let token = value
        .to_str()
        .ok()
        .and_then(|value| value.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token)
        .filter(|token| is_token68(token));
    match token {
        None => Err(unauthorized(
            "the Authorization header must be Bearer followed by one token",
            r#"Bearer realm="kvstore", error="invalid_token""#,
        )),
        Some(FORBIDDEN_TOKEN) => Err(problem(
            StatusCode::FORBIDDEN,
            "the token may not use the key-value store",
        )),
        Some(_) => Ok(()),
    }
}

/// RFC 9110's `token68`: the form of a bearer token.
fn is_token68(token: &str) -> bool {
    let body = token.trim_end_matches('=');
    !body.is_empty()
        && body.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
        })
}

fn check_name(what: &str, name: &str) -> Result<(), Problem> {
    let valid = (1..=MAX_NAME_LENGTH).contains(&name.len())
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if valid {
        Ok(())
    } else {
        Err(problem(
            StatusCode::BAD_REQUEST,
            format!(
                "the {what} must be 1 to {MAX_NAME_LENGTH} characters of A-Z, a-z, 0-9, '.', '_' and '-', \
                 and not '.' or '..'"
            ),
        ))
    }
}

/// Checks the media type, reads the body within the limit and checks it; returns both.
async fn read_value(headers: &HeaderMap, body: Body) -> Result<(HeaderValue, Bytes), Problem> {
    let content_type = headers
        .get(CONTENT_TYPE)
        .filter(|value| media_type(value).is_some())
        .cloned()
        .ok_or_else(|| {
            problem(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Content-Type must be text/plain or application/json, optionally with charset=utf-8",
            )
        })?;
    let too_large = || {
        problem(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("a value is at most {MAX_VALUE_BYTES} bytes"),
        )
    };
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > MAX_VALUE_BYTES as u64) {
        return Err(too_large());
    }
    let body = match Limited::new(body, MAX_VALUE_BYTES).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => return Err(too_large()),
        Err(_) => {
            return Err(problem(
                StatusCode::BAD_REQUEST,
                "the request body could not be read",
            ));
        }
    };
    let Ok(text) = std::str::from_utf8(&body) else {
        return Err(problem(StatusCode::BAD_REQUEST, "the value must be UTF-8"));
    };
    if media_type(&content_type) == Some(MediaType::Json)
        && let Err(error) = serde_json::from_str::<serde::de::IgnoredAny>(text)
    {
        return Err(problem(
            StatusCode::BAD_REQUEST,
            format!("the value is not JSON: {error}"),
        ));
    }
    Ok((content_type, body))
}

#[derive(Debug, PartialEq, Eq)]
enum MediaType {
    Text,
    Json,
}

/// The accepted media types: `text/plain` or `application/json`, case-insensitive, with at most a `charset`
/// parameter naming UTF-8.
fn media_type(value: &HeaderValue) -> Option<MediaType> {
    let mut parts = value.to_str().ok()?.split(';');
    let essence = parts.next()?.trim();
    let media_type = if essence.eq_ignore_ascii_case("text/plain") {
        MediaType::Text
    } else if essence.eq_ignore_ascii_case("application/json") {
        MediaType::Json
    } else {
        return None;
    };
    for parameter in parts {
        let (name, value) = parameter.split_once('=')?;
        let value = value.trim().trim_matches('"');
        let utf8 = value.eq_ignore_ascii_case("utf-8") || value.eq_ignore_ascii_case("utf8");
        if !name.trim().eq_ignore_ascii_case("charset") || !utf8 {
            return None;
        }
    }
    Some(media_type)
}

/// An `If-Match` precondition.
enum Condition {
    /// No `If-Match`: any stored value may be changed.
    None,
    /// `*`: a value must exist.
    Any,
    /// One of these strong tags, quotes included.
    Tags(Vec<String>),
}

impl Condition {
    fn check(&self, current: &HeaderValue) -> Result<(), Problem> {
        let matches = match self {
            Self::None | Self::Any => true,
            Self::Tags(tags) => tags.iter().any(|tag| tag.as_bytes() == current.as_bytes()),
        };
        if matches {
            Ok(())
        } else {
            Err(problem(
                StatusCode::PRECONDITION_FAILED,
                "the value changed since the ETag in If-Match was read",
            ))
        }
    }
}

fn if_match(headers: &HeaderMap) -> Result<Condition, Problem> {
    let malformed = || {
        problem(
            StatusCode::BAD_REQUEST,
            "If-Match must be * or a list of quoted entity tags",
        )
    };
    let mut tags = Vec::new();
    let mut any = false;
    for value in headers.get_all(IF_MATCH) {
        let value = value.to_str().map_err(|_| malformed())?;
        for tag in value.split(',').map(str::trim) {
            if tag == "*" {
                any = true;
            } else if let Some(opaque) = tag.strip_prefix("W/") {
                // Weak tags never match under If-Match's strong comparison, but they are well-formed.
                is_quoted(opaque).then_some(()).ok_or_else(malformed)?;
            } else if is_quoted(tag) {
                tags.push(tag.to_owned());
            } else {
                return Err(malformed());
            }
        }
    }
    Ok(match (any, headers.contains_key(IF_MATCH)) {
        (true, _) => Condition::Any,
        (false, true) => Condition::Tags(tags),
        (false, false) => Condition::None,
    })
}

fn is_quoted(tag: &str) -> bool {
    tag.len() >= 2
        && tag.starts_with('"')
        && tag.ends_with('"')
        && !tag[1..tag.len() - 1].contains('"')
}

/// An error answer: an RFC 9457 problem body, and at most one extra header (a challenge, `Allow`).
#[derive(Debug)]
struct Problem {
    status: StatusCode,
    detail: Cow<'static, str>,
    header: Option<(HeaderName, &'static str)>,
}

fn problem(status: StatusCode, detail: impl Into<Cow<'static, str>>) -> Problem {
    Problem {
        status,
        detail: detail.into(),
        header: None,
    }
}

impl Problem {
    fn with_header(mut self, name: HeaderName, value: &'static str) -> Self {
        self.header = Some((name, value));
        self
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "type": "about:blank",
            "title": self.status.canonical_reason().unwrap_or("Error"),
            "status": self.status.as_u16(),
            "detail": self.detail,
        });
        let mut response = (
            self.status,
            [(CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON))],
            body.to_string(),
        )
            .into_response();
        if let Some((name, value)) = self.header {
            response
                .headers_mut()
                .insert(name, HeaderValue::from_static(value));
        }
        response
    }
}

async fn not_found() -> Problem {
    problem(
        StatusCode::NOT_FOUND,
        "no such route: values live under /properties/{application}/{key}",
    )
}

async fn stats(State(standin): State<StandIn>) -> axum::Json<Stats> {
    axum::Json(standin.stats())
}

async fn reset(State(standin): State<StandIn>) -> StatusCode {
    standin.reset();
    StatusCode::NO_CONTENT
}

async fn get_faults(State(standin): State<StandIn>) -> axum::Json<Option<Faults>> {
    axum::Json(lock(&standin.inner.faults).clone())
}

async fn put_faults(State(standin): State<StandIn>, body: Bytes) -> Response {
    let faults = match serde_json::from_slice::<Faults>(&body) {
        Ok(faults) => faults,
        Err(error) => {
            return problem(
                StatusCode::BAD_REQUEST,
                format!(
                    "faults must be JSON like {{\"delay_ms\": 100, \"failure\": \"reset\", \"count\": 1}}: {error}"
                ),
            )
            .into_response();
        }
    };
    if let Err(detail) = faults.validate() {
        return problem(StatusCode::BAD_REQUEST, detail).into_response();
    }
    standin.set_faults(faults);
    StatusCode::NO_CONTENT.into_response()
}

async fn clear_faults(State(standin): State<StandIn>) -> StatusCode {
    standin.clear_faults();
    StatusCode::NO_CONTENT
}

#[cfg(test)]
mod tests;
