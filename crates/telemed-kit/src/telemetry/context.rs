//! The context of the request being handled, reachable from any code running on the request's task.
//!
//! The server stack builds one [`RequestContext`] per request (see [`RequestTelemetryLayer`]): the trace
//! context, the request id, and the headers the platform asks every service to forward from an inbound request
//! to each outbound request it causes. The log layer reads the trace id from it, and the outbound
//! [`Client`](crate::http::Client) reads the headers to forward. It is a task-local rather than a tracing
//! span because it costs nothing when no span is sampled; it is also put in the request extensions, for
//! handlers that hand work to another task (`Extension<Arc<RequestContext>>`, then [`scope`]).
//!
//! [`RequestTelemetryLayer`]: crate::telemetry::RequestTelemetryLayer

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue};

use super::b3::TraceIdText;

tokio::task_local! {
    static CURRENT: Arc<RequestContext>;
}

/// `x-request-id`: Envoy's request id, forwarded and echoed.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The headers forwarded verbatim from an inbound request to every outbound request it causes, besides B3
/// (which the propagator writes): Istio's list and the eHealth audit header.
pub const FORWARDED_HEADERS: [HeaderName; 5] = [
    X_REQUEST_ID,
    HeaderName::from_static("x-ot-span-context"),
    HeaderName::from_static("traceparent"),
    HeaderName::from_static("tracestate"),
    HeaderName::from_static("x-audit-restriction-levels"),
];

/// Longest forwarded header value accepted; a longer one is dropped rather than passed on.
pub const MAX_FORWARDED_VALUE: usize = 1024;

/// What the kit knows about the request being handled.
#[derive(Clone, Default)]
pub struct RequestContext {
    pub(crate) trace_id: Option<TraceIdText>,
    pub(crate) request_id: Option<HeaderValue>,
    pub(crate) forwarded: Vec<(HeaderName, HeaderValue)>,
    pub(crate) authorization: Option<HeaderValue>,
    pub(crate) otel: opentelemetry::Context,
}

impl fmt::Debug for RequestContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestContext")
            .field("trace_id", &self.trace_id())
            .field("request_id", &self.request_id())
            .field(
                "authorization",
                &self.authorization.as_ref().map(|_| "xxxxxxxxxx"),
            )
            .finish_non_exhaustive()
    }
}

impl RequestContext {
    /// A context holding only a trace id, for tests and for work that is not a request.
    pub fn with_trace_id(trace_id: TraceIdText) -> Self {
        Self {
            trace_id: Some(trace_id),
            ..Self::default()
        }
    }

    /// The trace id as it travels in `X-B3-TraceId` (16 or 32 lower-case hex digits).
    pub fn trace_id(&self) -> Option<&str> {
        self.trace_id.as_deref()
    }

    /// The request id (`x-request-id`), as received or as generated for this request.
    pub fn request_id(&self) -> Option<&str> {
        self.request_id
            .as_ref()
            .and_then(|value| value.to_str().ok())
    }

    /// The OpenTelemetry context: the inbound remote span, or the service's own server span when exporting.
    pub fn otel(&self) -> &opentelemetry::Context {
        &self.otel
    }

    /// Captures the headers to forward and the caller's `Authorization` from an inbound request. Values that
    /// are too long are dropped, never truncated (a truncated trace header would be worse than none).
    pub(crate) fn capture(&mut self, headers: &HeaderMap) {
        for name in FORWARDED_HEADERS {
            if name == X_REQUEST_ID {
                continue;
            }
            if let Some(value) = headers
                .get(&name)
                .filter(|value| value.len() <= MAX_FORWARDED_VALUE)
            {
                self.forwarded.push((name, value.clone()));
            }
        }
        self.authorization = headers.get(http::header::AUTHORIZATION).cloned();
    }

    /// Writes the forwarded headers (request id included) into an outbound request's headers.
    pub(crate) fn forward_into(&self, headers: &mut HeaderMap) {
        if let Some(request_id) = &self.request_id {
            headers.insert(X_REQUEST_ID, request_id.clone());
        }
        for (name, value) in &self.forwarded {
            headers.insert(name.clone(), value.clone());
        }
    }

    /// The caller's `Authorization` header, for an explicit relay.
    pub(crate) fn authorization(&self) -> Option<&HeaderValue> {
        self.authorization.as_ref()
    }
}

/// Runs `future` with `context` as the current request context.
pub fn scope<F: Future>(
    context: Arc<RequestContext>,
    future: F,
) -> impl Future<Output = F::Output> {
    CURRENT.scope(context, future)
}

/// Calls `f` with the current request context, or `None` outside a request.
pub fn with_current<R>(f: impl FnOnce(Option<&RequestContext>) -> R) -> R {
    match CURRENT.try_with(Arc::clone) {
        Ok(context) => f(Some(&context)),
        Err(_) => f(None),
    }
}

/// The current request context, if any.
pub fn current() -> Option<Arc<RequestContext>> {
    CURRENT.try_with(Arc::clone).ok()
}
