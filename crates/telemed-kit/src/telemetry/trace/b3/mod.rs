//! B3 trace propagation exactly as the specification (openzipkin/b3-propagation) describes it.
//!
//! The platform's mesh (Istio on Envoy) traces with B3, and the eHealth Call Tracing rules ask every service to
//! pass the B3 headers from each inbound request on to the requests it causes. [`B3Propagator`] reads them into
//! an OpenTelemetry [`Context`](opentelemetry::Context) and writes them back out; [`B3Context`] is the part of
//! them OpenTelemetry has no room for; [`trace_id_text`] is the trace id as it travels, for the log line's `id`.
//!
//! # Example
//!
//! ```
//! use std::collections::HashMap;
//! use telemed_kit::opentelemetry::propagation::TextMapPropagator;
//! use telemed_kit::telemetry::trace::b3::{B3Context, B3Inject, B3Propagator, Sampling, trace_id_text};
//!
//! let propagator = B3Propagator::new(B3Inject::Both);
//! let inbound = HashMap::from([(
//!     "b3".to_owned(),
//!     "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-d-05e3ac9a4f6e3b90".to_owned(),
//! )]);
//! let cx = propagator.extract(&inbound);
//! assert_eq!(cx.get::<B3Context>().unwrap().sampling(), Sampling::Debug);
//! assert_eq!(&*trace_id_text(&cx).unwrap(), "80f198ee56343ba864fe8b2a57d3eff7");
//!
//! // No local span was started, so the request leaves with what arrived.
//! let mut outbound = HashMap::new();
//! propagator.inject_context(&cx, &mut outbound);
//! assert_eq!(outbound["b3"], inbound["b3"]);
//! assert_eq!(outbound["x-b3-flags"], "1");
//! assert_eq!(outbound["x-b3-parentspanid"], "05e3ac9a4f6e3b90");
//! assert!(!outbound.contains_key("x-b3-sampled"));
//! ```
//!
//! # Why not `opentelemetry-propagator-b3` or `opentelemetry-zipkin`
//!
//! Their 0.33 releases drop sampling-only headers (`b3: 0` from a health check is lost), treat a deferred
//! decision as "not sampled", pad 64-bit trace ids and send them on as 32 digits, and cannot inject debug in
//! multi-header mode. Each of those breaks a trace or a sampling decision in a mixed fleet.
//!
//! # Extraction
//!
//! - **Precedence.** A valid `b3` header decides, as the spec says ("the single-header variant takes
//!   precedence"). When it is malformed, valid `X-B3-*` headers of the same request decide instead, as Brave
//!   does: a sender that writes both encodings may get one wrong, and the other still carries its trace. Only
//!   when both are malformed (or `b3` is malformed and there are no `X-B3-*` headers) is the request's B3
//!   ignored. Between B3 and W3C `traceparent`, [`Propagator`](super::Propagator) decides.
//! - **Names** match in any case. [`B3Propagator::extract_from_headers`] reads an `http::HeaderMap` directly;
//!   the [`Extractor`](opentelemetry::propagation::Extractor) path asks for lower-case names and lists
//!   `keys()` only when none was found (a case-sensitive carrier); [`B3Propagator::extract_from_pairs`] takes a
//!   raw map or list.
//! - **Repeated headers**: the first value wins (the spec's rule; `Extractor::get` and `HeaderMap::get` both
//!   return the first).
//! - **Malformed** (upper-case hex, wrong lengths, all-zero ids, unknown sampling values, stray or extra `-`,
//!   empty values, a trace id without a span id or the reverse, a parent id without both, a value that is not
//!   visible ASCII): the headers are ignored and the given context is returned unchanged, so the request starts
//!   a new trace. It is never an error; a `debug` event names the reason ([`MalformedB3`]), never the value.
//! - **Sampling**: `X-B3-Sampled` is `1` or `0`; the legacy `true`/`false` are accepted (the spec allows a
//!   lenient reader) and re-emitted as `1`/`0`. `X-B3-Flags: 1` means debug and wins over `X-B3-Sampled`; any
//!   other flags value is ignored. In `b3` the state is `1`, `0` or `d`, and a parent id may only follow a state.
//! - **Sampling-only** headers (`b3: 0`, `b3: 1`, `b3: d`, `X-B3-Sampled` or `X-B3-Flags: 1` alone) put a
//!   [`B3Context`] without ids in the context and no span: the next span is a new root that keeps the decision.
//!
//! With ids, the context gets a remote `SpanContext` (sampled for Accept and Debug) and the [`B3Context`] next to
//! it. [`B3Sampler`](super::B3Sampler) reads the decision from there, so Defer reaches the
//! local sampler instead of being taken for Deny.
//!
//! # Injection
//!
//! [`B3Context::outbound`] decides what a request sent from a context carries: the inbound context unchanged
//! while no local span was started (same width, parent id and decision, Defer and Debug included), or the local
//! span's ids with its decision (keeping the inbound width and Debug). Header names are written in lower case,
//! as HTTP/2 requires. Multi mode writes `X-B3-Sampled` only for Accept and Deny and `X-B3-Flags: 1` for Debug;
//! single mode writes `{trace}-{span}[-{1|0|d}[-{parent}]]`, so a deferred context goes without its parent id
//! there (use [`B3Inject::Both`] to keep it).

mod context;
mod parse;
mod propagator;

#[cfg(test)]
mod tests;

pub use context::{B3Context, Sampling, TraceIdText, trace_id_text};
pub use parse::{
    B3, B3Field, MalformedB3, MultiHeaders, X_B3_FLAGS, X_B3_PARENT_SPAN_ID, X_B3_SAMPLED,
    X_B3_SPAN_ID, X_B3_TRACE_ID,
};
pub(crate) use parse::{Lookup, lower_hex, parse_headers};
pub use propagator::{B3Inject, B3Propagator, ParseB3InjectError};
pub(crate) use propagator::{NAMES, ignore, with_b3};
