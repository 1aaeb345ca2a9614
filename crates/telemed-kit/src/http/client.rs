//! The outbound HTTP client: calls to infrastructure services carry what the platform requires.
//!
//! Every request sent through [`Client`] carries, from the inbound request that caused it:
//! - the trace context in both forms with the same ids, B3 (multi headers by default, `B3_INJECT` for single
//!   or both) and W3C `traceparent` with `tracestate`: the inbound context unchanged when spans are not
//!   exported, or this service's client span when they are (see [`Propagator`](crate::telemetry::trace::Propagator));
//! - `x-request-id`, `x-ot-span-context` and `x-audit-restriction-levels`, verbatim;
//! - `User-Agent` (`<service>/<version>` by default, `USER_AGENT` to set one such as `CGI-CC360-COPD/1.0.3`).
//!
//! The caller's `Authorization` is relayed only when the handler asks for it with
//! [`RequestBuilder::relay_authorization`]: forwarding credentials must be a decision, not a default. A service's
//! own token goes in with [`RequestBuilder::bearer`].
//!
//! Connect and request timeouts come from `OUTBOUND_CONNECT_TIMEOUT` (default 1s) and `OUTBOUND_TIMEOUT`
//! (default 5s). Errors are typed ([`ClientError`]) and name the target by scheme, host and path only: query
//! strings and credentials never reach an error message, a log line or a span. The client span's `url.full`
//! and error status are [redacted](crate::redact) as well: a path can hold a CPR number.
//!
//! Propagation is written here rather than taken from `reqwest-tracing`, which pins an older OpenTelemetry.
//!
//! # Example
//!
//! ```no_run
//! use axum::{Extension, extract::Path};
//! use telemed_kit::http::{Client, ClientError};
//!
//! async fn patient_name(
//!     Extension(client): Extension<Client>,
//!     Path(id): Path<String>,
//! ) -> Result<String, ClientError> {
//!     let response = client
//!         .get(&format!("https://patient.inttest.ehealth.sundhed.dk/fhir/Patient/{id}"))
//!         .relay_authorization()
//!         .send()
//!         .await?;
//!     Ok(response.text().await.map_err(ClientError::from_reqwest)?)
//! }
//! ```

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, header};
use opentelemetry::KeyValue;
use opentelemetry::propagation::{Injector, TextMapPropagator};
use opentelemetry::trace::{SpanKind, Status, TraceContextExt, Tracer as _};
use opentelemetry_semantic_conventions::trace as semconv;

use crate::config::{ConfigError, Env, ServiceIdentity};
use crate::redact::redact;
use crate::telemetry::Telemetry;
use crate::telemetry::context::{self, RequestContext};

/// Outbound client settings.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientSettings {
    /// `OUTBOUND_CONNECT_TIMEOUT`: time limit to open a connection. Defaults to 1s.
    pub connect_timeout: Duration,
    /// `OUTBOUND_TIMEOUT`: time limit of a whole request, response body included. Defaults to 5s.
    pub timeout: Duration,
    /// `USER_AGENT`: the `User-Agent` of every outbound request. Defaults to `<service>/<version>`.
    pub user_agent: String,
}

impl ClientSettings {
    /// Reads the outbound variables.
    pub fn from_env(env: &Env, service: &ServiceIdentity) -> Result<Self, ConfigError> {
        let connect_timeout =
            env.duration_or("OUTBOUND_CONNECT_TIMEOUT", Duration::from_secs(1))?;
        let timeout = env.duration_or("OUTBOUND_TIMEOUT", Duration::from_secs(5))?;
        for (name, value) in [
            ("OUTBOUND_CONNECT_TIMEOUT", connect_timeout),
            ("OUTBOUND_TIMEOUT", timeout),
        ] {
            if value.is_zero() {
                return Err(ConfigError::invalid(
                    name,
                    "0s",
                    "a duration above zero, such as 1s",
                ));
            }
        }
        let user_agent = env
            .parse_with(
                "USER_AGENT",
                "a product token such as CGI-CC360-COPD/1.0.3 (visible ASCII, at most 200 characters)",
                |raw| {
                    (raw.len() <= 200 && raw.bytes().all(|b| b == b' ' || b.is_ascii_graphic()))
                        .then(|| raw.to_owned())
                },
            )?
            .unwrap_or_else(|| format!("{}/{}", service.name, service.version));
        Ok(Self {
            connect_timeout,
            timeout,
            user_agent,
        })
    }
}

/// A failed outbound request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The URL does not parse or is not http(s).
    #[error("invalid outbound URL")]
    InvalidUrl,
    /// No connection could be opened within `OUTBOUND_CONNECT_TIMEOUT`, or it was refused.
    #[error("could not connect to {target}")]
    Connect {
        /// Scheme, host and path of the target.
        target: String,
    },
    /// The request or its response took longer than the time limit.
    #[error("request to {target} timed out")]
    Timeout {
        /// Scheme, host and path of the target.
        target: String,
    },
    /// The connection failed in another way, or the response could not be read.
    #[error("request to {target} failed")]
    Transport {
        /// Scheme, host and path of the target.
        target: String,
    },
    /// The client could not be built (for instance, no TLS roots available).
    #[error("the outbound HTTP client could not be built")]
    Build,
}

impl ClientError {
    /// Classifies a reqwest error, keeping only the target's scheme, host and path.
    pub fn from_reqwest(error: reqwest::Error) -> Self {
        let target = error.url().map(target_of).unwrap_or_default();
        if error.is_timeout() {
            Self::Timeout { target }
        } else if error.is_connect() {
            Self::Connect { target }
        } else if error.is_builder() && target.is_empty() {
            Self::InvalidUrl
        } else {
            Self::Transport { target }
        }
    }
}

impl axum::response::IntoResponse for ClientError {
    /// 504 for a timeout, 502 otherwise: the upstream failed, not this service. The body says no more.
    fn into_response(self) -> axum::response::Response {
        let status = match self {
            Self::Timeout { .. } => http::StatusCode::GATEWAY_TIMEOUT,
            _ => http::StatusCode::BAD_GATEWAY,
        };
        super::Problem::new(status).into_response()
    }
}

fn target_of(url: &reqwest::Url) -> String {
    format!(
        "{}://{}{}",
        url.scheme(),
        url.host_str().unwrap_or(""),
        url.path()
    )
}

/// The outbound client; cheap to clone (share one per service).
#[derive(Clone)]
pub struct Client {
    inner: Arc<ClientInner>,
}

struct ClientInner {
    settings: ClientSettings,
    telemetry: Telemetry,
    // Built on first use: building loads the TLS trust store, which is most of a service's startup time.
    http: OnceLock<reqwest::Client>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("settings", &self.inner.settings)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client with `settings` that propagates with `telemetry`'s propagator and tracer.
    pub fn new(settings: ClientSettings, telemetry: Telemetry) -> Self {
        Self {
            inner: Arc::new(ClientInner {
                settings,
                telemetry,
                http: OnceLock::new(),
            }),
        }
    }

    fn http(&self) -> Result<&reqwest::Client, ClientError> {
        if let Some(client) = self.inner.http.get() {
            return Ok(client);
        }
        let settings = &self.inner.settings;
        let client = reqwest::Client::builder()
            .connect_timeout(settings.connect_timeout)
            .timeout(settings.timeout)
            .user_agent(settings.user_agent.clone())
            // Redirects would carry the relayed Authorization to wherever the upstream points.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|_| ClientError::Build)?;
        Ok(self.inner.http.get_or_init(|| client))
    }

    /// A request with `method` to `url`.
    pub fn request(&self, method: Method, url: &str) -> RequestBuilder {
        RequestBuilder {
            client: self.clone(),
            method,
            url: reqwest::Url::parse(url)
                .ok()
                .filter(|url| matches!(url.scheme(), "http" | "https")),
            headers: HeaderMap::new(),
            body: None,
            relay_authorization: false,
            timeout: None,
        }
    }

    /// A GET request.
    pub fn get(&self, url: &str) -> RequestBuilder {
        self.request(Method::GET, url)
    }

    /// A POST request.
    pub fn post(&self, url: &str) -> RequestBuilder {
        self.request(Method::POST, url)
    }

    /// A PUT request.
    pub fn put(&self, url: &str) -> RequestBuilder {
        self.request(Method::PUT, url)
    }

    /// A DELETE request.
    pub fn delete(&self, url: &str) -> RequestBuilder {
        self.request(Method::DELETE, url)
    }
}

/// An outbound request being built; [`RequestBuilder::send`] sends it.
#[derive(Debug)]
#[must_use = "a request does nothing until it is sent"]
pub struct RequestBuilder {
    client: Client,
    method: Method,
    url: Option<reqwest::Url>,
    headers: HeaderMap,
    body: Option<Bytes>,
    relay_authorization: bool,
    timeout: Option<Duration>,
}

impl RequestBuilder {
    /// Sets a header (replacing any value set before).
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.insert(name, value);
        self
    }

    /// Sends `token` as `Authorization: Bearer <token>`; wins over a relayed header.
    pub fn bearer(mut self, token: &str) -> Self {
        if let Ok(mut value) = HeaderValue::from_str(&format!("Bearer {token}")) {
            value.set_sensitive(true);
            self.headers.insert(header::AUTHORIZATION, value);
        }
        self
    }

    /// Relays the inbound request's `Authorization` header, when the current request has one.
    pub fn relay_authorization(mut self) -> Self {
        self.relay_authorization = true;
        self
    }

    /// The request body.
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = Some(body.into());
        self
    }

    /// A time limit for this request, instead of `OUTBOUND_TIMEOUT`.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Sends the request with the current request's trace context and forwarded headers. Any status is a
    /// response; only transport failures are errors.
    pub async fn send(self) -> Result<reqwest::Response, ClientError> {
        let Self {
            client,
            method,
            url,
            mut headers,
            body,
            relay_authorization,
            timeout,
        } = self;
        let url = url.ok_or(ClientError::InvalidUrl)?;
        let host = url.host_str().unwrap_or("").to_owned();
        let http = client.http()?;
        let current = context::current();
        let telemetry = &client.inner.telemetry;

        let parent = current
            .as_deref()
            .map(RequestContext::otel)
            .cloned()
            .unwrap_or_default();
        let otel = match telemetry.tracer() {
            Some(tracer) if parent.span().span_context().is_sampled() => {
                let span = tracer
                    .span_builder(format!("{method} {}", url.host_str().unwrap_or("")))
                    .with_kind(SpanKind::Client)
                    .with_attributes([
                        KeyValue::new(semconv::HTTP_REQUEST_METHOD, method.to_string()),
                        KeyValue::new(
                            semconv::SERVER_ADDRESS,
                            url.host_str().unwrap_or("").to_owned(),
                        ),
                        // The path can carry a CPR number (a key, an identifier); spans are kept like logs.
                        KeyValue::new(semconv::URL_FULL, redact(&target_of(&url)).into_owned()),
                    ])
                    .start_with_context(tracer, &parent);
                parent.with_span(span)
            }
            _ => parent,
        };

        let mut outbound = HeaderMap::new();
        if let Some(current) = &current {
            current.forward_into(&mut outbound);
            if relay_authorization
                && !headers.contains_key(header::AUTHORIZATION)
                && let Some(authorization) = current.authorization()
            {
                let mut authorization = authorization.clone();
                authorization.set_sensitive(true);
                outbound.insert(header::AUTHORIZATION, authorization);
            }
        }
        telemetry
            .propagator()
            .inject_context(&otel, &mut HeaderInjector(&mut outbound));
        outbound.extend(
            headers
                .drain()
                .filter_map(|(name, value)| name.map(|name| (name, value))),
        );

        let mut request = http.request(method, url).headers(outbound);
        if let Some(body) = body {
            request = request.body(body);
        }
        if let Some(timeout) = timeout {
            request = request.timeout(timeout);
        }
        let started = std::time::Instant::now();
        let result = request.send().await.map_err(ClientError::from_reqwest);
        telemetry.metrics().outbound(
            &host,
            result
                .as_ref()
                .ok()
                .map(|response| response.status().as_u16()),
            started.elapsed(),
        );
        let span = otel.span();
        if span.is_recording() {
            match &result {
                Ok(response) => {
                    let status = response.status().as_u16();
                    span.set_attribute(KeyValue::new(
                        semconv::HTTP_RESPONSE_STATUS_CODE,
                        i64::from(status),
                    ));
                    if status >= 500 {
                        span.set_status(Status::error(""));
                    }
                }
                Err(error) => {
                    span.set_status(Status::error(redact(&error.to_string()).into_owned()))
                }
            }
            span.end();
        }
        result
    }
}

struct HeaderInjector<'a>(&'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(key.as_bytes()),
            HeaderValue::try_from(value),
        ) {
            self.0.insert(name, value);
        }
    }
}
