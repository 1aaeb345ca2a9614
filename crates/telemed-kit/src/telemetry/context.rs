//! The context of the request being handled, reachable from any code running on the request's task.
//!
//! The server stack sets it for each request (see [`scope`]); the log layer reads the trace id from it, and
//! the outbound client reads the headers to forward. A task-local, rather than a tracing span, because it
//! costs nothing when no span is sampled.

use std::future::Future;
use std::sync::Arc;

tokio::task_local! {
    static CURRENT: Arc<RequestContext>;
}

/// What the kit knows about the request being handled.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct RequestContext {
    trace_id: Option<String>,
}

impl RequestContext {
    /// A context for a request whose trace id is `trace_id`, exactly as it travels in `X-B3-TraceId`.
    pub fn new(trace_id: Option<String>) -> Self {
        Self { trace_id }
    }

    /// The trace id as it travels in `X-B3-TraceId` (16 or 32 lower-case hex digits).
    pub fn trace_id(&self) -> Option<&str> {
        self.trace_id.as_deref()
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
