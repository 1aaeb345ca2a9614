//! A typed client for the key-value store, on the kit's outbound [`Client`].
//!
//! Requests go through the kit's client, so they carry the trace context, the request id, the audit header,
//! the service's `User-Agent` and its timeouts. Each call says how it authenticates ([`Auth`]): relay the
//! caller's bearer token, or send one the service obtained itself.
//!
//! Statuses become [`KvError`] variants (404 `NotFound`, 409 `AlreadyExists`, 412 `Conflict`, ...), so that
//! handlers map them without looking at numbers; a 2xx with a body that breaks the contract (no `ETag`, an
//! unknown media type) is `InvalidResponse`, never a value.
//!
//! # Example
//!
//! ```no_run
//! # async fn example(kvstore: telemed_kit::kvstore::KvStore) -> Result<(), telemed_kit::kvstore::KvError> {
//! use telemed_kit::kvstore::{Auth, MediaType};
//!
//! let entry = kvstore.read("greeting", Auth::Relay).await?;
//! let etag = kvstore
//!     .update("greeting", "hej".into(), MediaType::Text, &entry.etag, Auth::Relay)
//!     .await?;
//! # let _ = etag;
//! # Ok(())
//! # }
//! ```

use std::fmt;

use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode, header};

use crate::config::{ConfigError, Env, ServiceIdentity};
use crate::http::{Client, ClientError, RequestBuilder};

/// Longest key accepted; see [`valid_key`].
pub const MAX_KEY_LEN: usize = 128;
/// Largest value the store takes.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;

/// Whether `key` (or an application name) is 1 to 128 characters of `A-Z a-z 0-9 . _ -`, and not `.` or `..`.
///
/// Checked before any request is sent, so that a key can never change the path (`../`, `%2F`, `?`).
pub fn valid_key(key: &str) -> bool {
    (1..=MAX_KEY_LEN).contains(&key.len())
        && key != "."
        && key != ".."
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Where the store is and which application's keys the service uses.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct KvStoreSettings {
    /// `KVSTORE_URL`: the store's base URL, such as `https://kvstore.inttest.ehealth.sundhed.dk`. Required: no
    /// default, so that a deployment that forgets it fails at startup, not at the first request.
    pub url: String,
    /// `KVSTORE_APPLICATION`: the `{application}` path segment. Defaults to the service name.
    pub application: String,
    /// The path below the base URL, with `{application}` and `{key}` placeholders. The store's published API
    /// description is not available; this is the documented path. Defaults to `/properties/{application}/{key}`.
    pub path_template: String,
}

impl KvStoreSettings {
    /// Reads `KVSTORE_URL` (required) and `KVSTORE_APPLICATION`.
    pub fn from_env(env: &Env, service: &ServiceIdentity) -> Result<Self, ConfigError> {
        let url = env.required(
            "KVSTORE_URL",
            "the key-value store's base URL, such as https://kvstore.inttest.ehealth.sundhed.dk",
            |raw| {
                let url = reqwest::Url::parse(raw).ok()?;
                let usable = matches!(url.scheme(), "http" | "https")
                    && url.host_str().is_some()
                    && url.username().is_empty()
                    && url.password().is_none()
                    && url.query().is_none();
                usable.then(|| raw.trim_end_matches('/').to_owned())
            },
        )?;
        let application = env
            .parse_with(
                "KVSTORE_APPLICATION",
                "1 to 128 characters of A-Z a-z 0-9 . _ -",
                |raw| valid_key(raw).then(|| raw.to_owned()),
            )?
            .unwrap_or_else(|| service.name.clone());
        Ok(Self {
            url,
            application,
            path_template: "/properties/{application}/{key}".to_owned(),
        })
    }
}

/// The media type of a stored value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaType {
    /// `text/plain`.
    Text,
    /// `application/json`.
    Json,
}

impl MediaType {
    /// The `Content-Type` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text/plain; charset=utf-8",
            Self::Json => "application/json",
        }
    }

    /// Parses a `Content-Type` value: `text/plain` or `application/json`, with an optional `charset=utf-8`.
    pub fn from_content_type(value: &str) -> Option<Self> {
        let mut parts = value.split(';').map(str::trim);
        let media = match parts.next()?.to_ascii_lowercase().as_str() {
            "text/plain" => Self::Text,
            "application/json" => Self::Json,
            _ => return None,
        };
        parts
            .all(|parameter| parameter.eq_ignore_ascii_case("charset=utf-8"))
            .then_some(media)
    }
}

/// An opaque entity tag, quotes included, as the store sent it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ETag(HeaderValue);

impl ETag {
    /// An entity tag from a header value, such as an inbound `If-Match`; `None` unless it is one quoted tag.
    pub fn parse(value: &str) -> Option<Self> {
        let inner = value.strip_prefix('"')?.strip_suffix('"')?;
        let valid = !inner.contains('"')
            && inner
                .bytes()
                .all(|b| b == 0x21 || (0x23..=0x7e).contains(&b));
        valid
            .then(|| HeaderValue::from_str(value).ok().map(Self))
            .flatten()
    }

    /// The header value.
    pub fn as_header(&self) -> &HeaderValue {
        &self.0
    }
}

impl fmt::Display for ETag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.to_str().unwrap_or_default())
    }
}

/// A stored value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The value.
    pub value: Bytes,
    /// Its media type.
    pub media_type: MediaType,
    /// Its current entity tag, for a later conditional update.
    pub etag: ETag,
}

/// How a request authenticates to the store.
///
/// Its `Debug` output never shows the token, so `?auth` in a log line is safe.
#[derive(Clone)]
pub enum Auth {
    /// Relay the inbound request's `Authorization` header.
    Relay,
    /// Send this bearer token (for instance the service's own, from a client-credentials grant).
    Bearer(String),
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Relay => formatter.write_str("Relay"),
            Self::Bearer(_) => formatter.write_str("Bearer(xxxxxxxxxx)"),
        }
    }
}

/// A failed store operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KvError {
    /// The key is not valid; nothing was sent.
    #[error("invalid key")]
    InvalidKey,
    /// The value is larger than 64 KiB; nothing was sent.
    #[error("value too large")]
    TooLarge,
    /// 404: no value under this key.
    #[error("no such key")]
    NotFound,
    /// 409: create of a key that exists.
    #[error("the key exists already")]
    AlreadyExists,
    /// 412: the `If-Match` entity tag is stale; someone else wrote in between.
    #[error("the value changed since it was read")]
    Conflict,
    /// 428: the store wants an `If-Match`.
    #[error("the store requires If-Match")]
    PreconditionRequired,
    /// 401: no or invalid credentials.
    #[error("not authenticated to the key-value store")]
    Unauthorized,
    /// 403: the credentials do not allow this.
    #[error("not allowed by the key-value store")]
    Forbidden,
    /// A 5xx from the store.
    #[error("the key-value store failed with status {status}")]
    Upstream {
        /// The status it answered.
        status: u16,
    },
    /// Any other status, or a response that breaks the contract (no `ETag`, an unknown media type, a body that
    /// could not be read).
    #[error("the key-value store answered outside its contract")]
    InvalidResponse,
    /// The store took longer than the time limit.
    #[error("the key-value store timed out")]
    Timeout,
    /// The store could not be reached.
    #[error("the key-value store is unreachable")]
    Unavailable,
}

impl From<ClientError> for KvError {
    fn from(error: ClientError) -> Self {
        match error {
            ClientError::Timeout { .. } => Self::Timeout,
            _ => Self::Unavailable,
        }
    }
}

/// The key-value store client; cheap to clone.
#[derive(Debug, Clone)]
pub struct KvStore {
    client: Client,
    settings: std::sync::Arc<KvStoreSettings>,
}

impl KvStore {
    /// A client for the store in `settings`, sending through `client`.
    pub fn new(settings: KvStoreSettings, client: Client) -> Self {
        Self {
            client,
            settings: std::sync::Arc::new(settings),
        }
    }

    /// The settings.
    pub fn settings(&self) -> &KvStoreSettings {
        &self.settings
    }

    fn url(&self, key: &str) -> Result<String, KvError> {
        if !valid_key(key) {
            return Err(KvError::InvalidKey);
        }
        let path = self
            .settings
            .path_template
            .replace("{application}", &self.settings.application)
            .replace("{key}", key);
        Ok(format!("{}{path}", self.settings.url))
    }

    fn request(&self, method: Method, key: &str, auth: &Auth) -> Result<RequestBuilder, KvError> {
        let request = self.client.request(method, &self.url(key)?);
        Ok(match auth {
            Auth::Relay => request.relay_authorization(),
            Auth::Bearer(token) => request.bearer(token),
        })
    }

    /// Reads the value under `key`.
    pub async fn read(&self, key: &str, auth: Auth) -> Result<Entry, KvError> {
        let response = self.request(Method::GET, key, &auth)?.send().await?;
        check_status(response.status(), StatusCode::OK)?;
        let etag = etag_of(&response)?;
        let media_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .and_then(MediaType::from_content_type)
            .ok_or(KvError::InvalidResponse)?;
        let value =
            response
                .bytes()
                .await
                .map_err(|error| match ClientError::from_reqwest(error) {
                    ClientError::Timeout { .. } => KvError::Timeout,
                    _ => KvError::InvalidResponse,
                })?;
        if media_type == MediaType::Json
            && serde_json::from_slice::<serde::de::IgnoredAny>(&value).is_err()
        {
            return Err(KvError::InvalidResponse);
        }
        Ok(Entry {
            value,
            media_type,
            etag,
        })
    }

    /// Creates `key`; [`KvError::AlreadyExists`] if it exists.
    pub async fn create(
        &self,
        key: &str,
        value: Bytes,
        media_type: MediaType,
        auth: Auth,
    ) -> Result<ETag, KvError> {
        self.write(
            Method::POST,
            key,
            value,
            media_type,
            None,
            auth,
            StatusCode::CREATED,
        )
        .await
    }

    /// Replaces the value under `key` if its entity tag is still `if_match`; [`KvError::Conflict`] otherwise.
    pub async fn update(
        &self,
        key: &str,
        value: Bytes,
        media_type: MediaType,
        if_match: &ETag,
        auth: Auth,
    ) -> Result<ETag, KvError> {
        self.write(
            Method::PUT,
            key,
            value,
            media_type,
            Some(if_match),
            auth,
            StatusCode::OK,
        )
        .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn write(
        &self,
        method: Method,
        key: &str,
        value: Bytes,
        media_type: MediaType,
        if_match: Option<&ETag>,
        auth: Auth,
        success: StatusCode,
    ) -> Result<ETag, KvError> {
        if value.len() > MAX_VALUE_BYTES {
            return Err(KvError::TooLarge);
        }
        let mut request = self
            .request(method, key, &auth)?
            .header(
                header::CONTENT_TYPE,
                HeaderValue::from_static(media_type.as_str()),
            )
            .body(value);
        if let Some(etag) = if_match {
            request = request.header(header::IF_MATCH, etag.as_header().clone());
        }
        let response = request.send().await?;
        check_status(response.status(), success)?;
        etag_of(&response)
    }

    /// Deletes `key`, only if its entity tag is still `if_match` when one is given.
    pub async fn delete(
        &self,
        key: &str,
        if_match: Option<&ETag>,
        auth: Auth,
    ) -> Result<(), KvError> {
        let mut request = self.request(Method::DELETE, key, &auth)?;
        if let Some(etag) = if_match {
            request = request.header(header::IF_MATCH, etag.as_header().clone());
        }
        let response = request.send().await?;
        check_status(response.status(), StatusCode::NO_CONTENT)
    }

    /// Whether the store answers at all: any HTTP answer below 500, even 401 or 404, shows it is up. Used as the
    /// readiness check, which has no user token to send.
    pub async fn ping(&self) -> Result<(), KvError> {
        let response = self
            .client
            .request(Method::HEAD, &self.url("readiness-probe")?)
            .send()
            .await?;
        if response.status().is_server_error() {
            return Err(KvError::Upstream {
                status: response.status().as_u16(),
            });
        }
        Ok(())
    }
}

fn check_status(status: StatusCode, success: StatusCode) -> Result<(), KvError> {
    match status {
        status if status == success => Ok(()),
        StatusCode::NOT_FOUND => Err(KvError::NotFound),
        StatusCode::CONFLICT => Err(KvError::AlreadyExists),
        StatusCode::PRECONDITION_FAILED => Err(KvError::Conflict),
        StatusCode::PRECONDITION_REQUIRED => Err(KvError::PreconditionRequired),
        StatusCode::UNAUTHORIZED => Err(KvError::Unauthorized),
        StatusCode::FORBIDDEN => Err(KvError::Forbidden),
        status if status.is_server_error() => Err(KvError::Upstream {
            status: status.as_u16(),
        }),
        _ => Err(KvError::InvalidResponse),
    }
}

fn etag_of(response: &reqwest::Response) -> Result<ETag, KvError> {
    response
        .headers()
        .get(header::ETAG)
        .and_then(|value| value.to_str().ok())
        .and_then(ETag::parse)
        .ok_or(KvError::InvalidResponse)
}
