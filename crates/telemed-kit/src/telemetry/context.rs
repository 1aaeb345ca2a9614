//! The context of the request being handled, reachable from any code running on the request's task.
//!
//! The server stack builds one [`RequestContext`] per request (see [`RequestTelemetryLayer`]): the trace
//! context, the request id, and the headers the platform asks every service to forward from an inbound request
//! to each outbound request it causes. The log layer reads the trace id from it, and the outbound
//! [`Client`](crate::http::Client) reads the headers to forward. It is a task-local rather than a tracing
//! span because it costs nothing when no span is sampled. A handler that hands work to another task takes the
//! context with [`current`] and runs that work in [`scope`], so that its logs and calls still belong to the
//! request.
//!
//! [`RequestTelemetryLayer`]: crate::telemetry::RequestTelemetryLayer

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue};

use super::trace::b3::TraceIdText;

tokio::task_local! {
    static CURRENT: Arc<RequestContext>;
}

/// `x-request-id`: Envoy's request id, forwarded and echoed.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The headers forwarded verbatim from an inbound request to every outbound request it causes, besides the trace
/// context (B3, `traceparent` and `tracestate`, which the [`Propagator`](super::trace::Propagator) writes):
/// the rest of Istio's list and the eHealth audit header.
pub const FORWARDED_HEADERS: [HeaderName; 3] = [
    X_REQUEST_ID,
    HeaderName::from_static("x-ot-span-context"),
    HeaderName::from_static("x-audit-restriction-levels"),
];

/// Longest forwarded header value accepted; a longer one is dropped rather than passed on.
pub const MAX_FORWARDED_VALUE: usize = 1024;

/// What the kit knows about the request being handled.
#[derive(Clone, Default)]
pub struct RequestContext {
    pub(crate) trace_id: Option<TraceIdText>,
    pub(crate) request_id: Option<HeaderValue>,
    /// The kit generated `request_id`, and redaction leaves it as it is.
    pub(crate) request_id_generated: bool,
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
    ///
    /// The first value of a name counts, as with `HeaderMap::get`; the headers are read in one pass rather
    /// than looked up by name, each lookup hashing its name.
    pub(crate) fn capture(&mut self, headers: &HeaderMap) {
        // Bit `i`: a value of `FORWARDED_HEADERS[i]` was met.
        let mut seen = 0u8;
        for (name, value) in headers {
            if name == http::header::AUTHORIZATION {
                self.authorization.get_or_insert_with(|| value.clone());
                continue;
            }
            let Some(index) = FORWARDED_HEADERS.iter().position(|known| known == name) else {
                continue;
            };
            // The request layer takes the request id itself, validated.
            if *name == X_REQUEST_ID || seen & (1 << index) != 0 {
                continue;
            }
            seen |= 1 << index;
            if value.len() <= MAX_FORWARDED_VALUE {
                self.forwarded.push((name.clone(), value.clone()));
            }
        }
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
///
/// # Example
///
/// Work a handler hands to another task stays part of the request: its log lines carry the request's
/// trace id, and the outbound client forwards the request's headers.
///
/// ```
/// use telemed_kit::telemetry::context;
///
/// async fn handler() -> &'static str {
///     let audit = async { tracing::info!("audited") };
///     match context::current() {
///         Some(request) => tokio::spawn(context::scope(request, audit)),
///         None => tokio::spawn(audit),
///     };
///     "accepted"
/// }
/// ```
pub fn scope<F: Future>(context: Arc<RequestContext>, future: F) -> Scoped<F> {
    CURRENT.scope(context, future)
}

/// A future running with a request context as the current one: what [`scope`] returns.
pub type Scoped<F> = tokio::task::futures::TaskLocalFuture<Arc<RequestContext>, F>;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capture_keeps_the_first_value_of_each_header_and_drops_a_first_value_too_long() {
        let mut headers = HeaderMap::new();
        let mut add = |name: &'static str, value: &str| {
            headers.append(name, HeaderValue::from_str(value).unwrap());
        };
        add("x-ot-span-context", "first");
        add("x-ot-span-context", "second");
        add(
            "x-audit-restriction-levels",
            &"a".repeat(MAX_FORWARDED_VALUE + 1),
        );
        add("x-audit-restriction-levels", "short");
        // The trace context is the propagator's: written from the context, not forwarded as it came.
        add(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        );
        add("x-request-id", "taken by the request layer");
        add("authorization", "Bearer one");
        add("authorization", "Bearer two");
        add("accept", "application/json");
        let mut context = RequestContext::default();
        context.capture(&headers);

        let mut outbound = HeaderMap::new();
        context.forward_into(&mut outbound);
        assert_eq!(outbound.len(), 1, "{outbound:?}");
        assert_eq!(outbound["x-ot-span-context"], "first");
        assert_eq!(context.authorization().unwrap(), "Bearer one");
    }
}
