//! The B3 view of a trace context: what arrived, or what an outbound request carries.

use std::fmt;
use std::ops::Deref;

use opentelemetry::Context;
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};

use crate::telemetry::json::hex;

/// A B3 sampling state.
///
/// OpenTelemetry's `SpanContext` has one sampled bit, so it cannot tell "not sampled" from "not decided yet" and
/// has no debug flag; B3 needs all four.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Sampling {
    /// No decision yet (`X-B3-Sampled` absent, no state field in `b3`): the receiver decides.
    #[default]
    Defer,
    /// Do not record (`X-B3-Sampled: 0`, `b3: ...-0`).
    Deny,
    /// Record (`X-B3-Sampled: 1`, `b3: ...-1`).
    Accept,
    /// Record and mark every span as debug (`X-B3-Flags: 1`, `b3: ...-d`); implies [`Sampling::Accept`].
    Debug,
}

impl Sampling {
    /// Whether spans are recorded: `None` while deferred.
    pub fn is_sampled(self) -> Option<bool> {
        match self {
            Self::Defer => None,
            Self::Deny => Some(false),
            Self::Accept | Self::Debug => Some(true),
        }
    }

    /// The single-header sampling state character, `None` for [`Sampling::Defer`] (which is the field's absence).
    pub(crate) fn single_char(self) -> Option<char> {
        match self {
            Self::Defer => None,
            Self::Deny => Some('0'),
            Self::Accept => Some('1'),
            Self::Debug => Some('d'),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ids {
    trace_id: TraceId,
    trace_id_64: bool,
    span_id: SpanId,
    parent_span_id: Option<SpanId>,
}

/// The B3 fields of one request, kept in the OpenTelemetry [`Context`] next to the remote `SpanContext`.
///
/// [`B3Propagator`](super::B3Propagator) stores the extracted value with [`Context::with_value`]; read it with
/// `cx.get::<B3Context>()`. It carries what a `SpanContext` cannot: a deferred decision, the debug flag, whether
/// the trace id travelled as 16 hex digits, the inbound parent span id, and a decision sent without any ids
/// (`b3: 0`). The inject side re-emits it so an unchanged context leaves exactly as it arrived.
///
/// # Example
///
/// ```
/// use telemed_kit::telemetry::trace::b3::{B3Context, Sampling};
///
/// let b3 = B3Context::parse_single("463ac35c9f6413ad-a2fb4a1d1a96d312-d").unwrap();
/// assert_eq!(b3.sampling(), Sampling::Debug);
/// assert!(b3.is_trace_id_64());
/// assert_eq!(&*b3.trace_id_text().unwrap(), "463ac35c9f6413ad");
/// assert_eq!(b3.to_string(), "463ac35c9f6413ad-a2fb4a1d1a96d312-d");
///
/// let health_check = B3Context::parse_single("0").unwrap();
/// assert_eq!(health_check.sampling(), Sampling::Deny);
/// assert_eq!(health_check.trace_id(), None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct B3Context {
    ids: Option<Ids>,
    sampling: Sampling,
}

impl B3Context {
    /// A decision sent without ids (`b3: 0`, `X-B3-Sampled: 1`, `X-B3-Flags: 1`); `None` for
    /// [`Sampling::Defer`], which without ids says nothing.
    pub fn sampling_only(sampling: Sampling) -> Option<Self> {
        (sampling != Sampling::Defer).then_some(Self {
            ids: None,
            sampling,
        })
    }

    /// A context with a 128-bit trace id and no parent; `None` when either id is all zeros.
    pub fn new(trace_id: TraceId, span_id: SpanId, sampling: Sampling) -> Option<Self> {
        Self::from_parts(trace_id, false, span_id, None, sampling)
    }

    /// `trace_id_64` is only honoured when the upper 64 bits are zero: such an id is what a 16-digit id pads to.
    pub(crate) fn from_parts(
        trace_id: TraceId,
        trace_id_64: bool,
        span_id: SpanId,
        parent_span_id: Option<SpanId>,
        sampling: Sampling,
    ) -> Option<Self> {
        if trace_id == TraceId::INVALID
            || span_id == SpanId::INVALID
            || parent_span_id == Some(SpanId::INVALID)
        {
            return None;
        }
        Some(Self {
            ids: Some(Ids {
                trace_id,
                trace_id_64: trace_id_64 && u128::from_be_bytes(trace_id.to_bytes()) >> 64 == 0,
                span_id,
                parent_span_id,
            }),
            sampling,
        })
    }

    /// The sampling state.
    pub fn sampling(&self) -> Sampling {
        self.sampling
    }

    /// The trace id (a 64-bit id left-padded with zeros), `None` for a sampling-only context.
    pub fn trace_id(&self) -> Option<TraceId> {
        self.ids.map(|ids| ids.trace_id)
    }

    /// Whether the trace id travels as 16 hex digits rather than 32.
    pub fn is_trace_id_64(&self) -> bool {
        self.ids.is_some_and(|ids| ids.trace_id_64)
    }

    /// The span id, `None` for a sampling-only context.
    pub fn span_id(&self) -> Option<SpanId> {
        self.ids.map(|ids| ids.span_id)
    }

    /// The parent span id, when one was sent.
    pub fn parent_span_id(&self) -> Option<SpanId> {
        self.ids.and_then(|ids| ids.parent_span_id)
    }

    /// Whether only a decision travels, without ids.
    pub fn is_sampling_only(&self) -> bool {
        self.ids.is_none()
    }

    /// The trace id exactly as it travels: 16 or 32 lower-case hex digits.
    pub fn trace_id_text(&self) -> Option<TraceIdText> {
        self.ids
            .map(|ids| TraceIdText::new(ids.trace_id, ids.trace_id_64))
    }

    /// The remote OpenTelemetry span context for these ids, sampled for Accept and Debug; invalid (all zeros)
    /// for a sampling-only context.
    pub fn span_context(&self) -> SpanContext {
        match self.ids {
            None => SpanContext::empty_context(),
            Some(ids) => {
                let flags = if self.sampling.is_sampled() == Some(true) {
                    TraceFlags::SAMPLED
                } else {
                    TraceFlags::NOT_SAMPLED
                };
                SpanContext::new(ids.trace_id, ids.span_id, flags, true, TraceState::NONE)
            }
        }
    }

    /// What a request sent from `cx` carries.
    ///
    /// - The span in `cx` is the extracted one (same trace and span id as the [`B3Context`] in `cx`): the inbound
    ///   context unchanged, with its width, parent id and decision (including Defer and Debug).
    /// - Another valid span (a local child, or one extracted by another propagator): its ids, no parent id (an
    ///   OpenTelemetry span does not expose its parent), and the decision from its sampled flag. When it belongs
    ///   to the inbound trace, or the inbound context was sampling-only, the trace id keeps its inbound width and
    ///   an inbound Debug stays Debug.
    /// - No valid span: the [`B3Context`] in `cx` as it is (a sampling-only decision is passed on).
    /// - Otherwise `None`: there is nothing to propagate.
    pub fn outbound(cx: &Context) -> Option<Self> {
        let inbound = cx.get::<Self>().copied();
        let span = cx.span();
        let span_context = span.span_context();
        if !span_context.is_valid() {
            return inbound;
        }
        let (trace_id, span_id) = (span_context.trace_id(), span_context.span_id());
        if let Some(b3) = inbound
            && let Some(ids) = b3.ids
            && ids.trace_id == trace_id
            && ids.span_id == span_id
        {
            return Some(b3);
        }
        let related = inbound.filter(|b3| b3.trace_id().is_none_or(|id| id == trace_id));
        let sampling = if related.is_some_and(|b3| b3.sampling == Sampling::Debug) {
            Sampling::Debug
        } else if span_context.is_sampled() {
            Sampling::Accept
        } else {
            Sampling::Deny
        };
        let trace_id_64 = related.is_some_and(|b3| b3.is_trace_id_64());
        Self::from_parts(trace_id, trace_id_64, span_id, None, sampling)
    }
}

/// The single-header form, `{trace}-{span}[-{1|0|d}[-{parent}]]`, or only the state for a sampling-only context.
///
/// A deferred context with a parent id is written without the parent: the parent sits after the state field, and
/// Defer is the absence of that field.
impl fmt::Display for B3Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.sampling.single_char();
        let Some(ids) = self.ids else {
            return match state {
                Some(state) => write!(f, "{state}"),
                None => Ok(()),
            };
        };
        f.write_str(&TraceIdText::new(ids.trace_id, ids.trace_id_64))?;
        write!(f, "-{:016x}", ids.span_id)?;
        if let Some(state) = state {
            write!(f, "-{state}")?;
            if let Some(parent) = ids.parent_span_id {
                write!(f, "-{parent:016x}")?;
            }
        }
        Ok(())
    }
}

/// A trace id as it travels on the wire (16 or 32 lower-case hex digits), held on the stack.
///
/// It dereferences to `str`, so the log line's `id` field can borrow it without a heap allocation.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceIdText {
    digits: [u8; 32],
    len: u8,
}

impl TraceIdText {
    /// The text of `trace_id`: its low 16 hex digits when `as_64` and the upper half is zero, otherwise 32.
    pub fn new(trace_id: TraceId, as_64: bool) -> Self {
        let bytes = trace_id.to_bytes();
        let len = if as_64 && bytes[..8] == [0; 8] {
            16
        } else {
            32
        };
        let mut digits = [0u8; 32];
        hex(&mut digits, &bytes[16 - len / 2..]);
        Self {
            digits,
            len: len as u8,
        }
    }

    /// The digits as text.
    pub fn as_str(&self) -> &str {
        // Only ASCII hex digits are ever written, so this never falls back.
        std::str::from_utf8(&self.digits[..usize::from(self.len)]).unwrap_or_default()
    }
}

impl Deref for TraceIdText {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for TraceIdText {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq<str> for TraceIdText {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for TraceIdText {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl fmt::Display for TraceIdText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for TraceIdText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// The trace id of the request sent from `cx`, exactly as it travels in `X-B3-TraceId`; see
/// [`B3Context::outbound`]. This is the value of the log line's `id` field.
///
/// # Example
///
/// ```
/// use std::collections::HashMap;
/// use telemed_kit::opentelemetry::propagation::TextMapPropagator;
/// use telemed_kit::telemetry::trace::b3::{B3Propagator, trace_id_text};
///
/// let headers = HashMap::from([("b3".to_owned(), "463ac35c9f6413ad-a2fb4a1d1a96d312-1".to_owned())]);
/// let cx = B3Propagator::default().extract(&headers);
/// assert_eq!(trace_id_text(&cx).unwrap(), "463ac35c9f6413ad");
/// ```
pub fn trace_id_text(cx: &Context) -> Option<TraceIdText> {
    B3Context::outbound(cx).and_then(|b3| b3.trace_id_text())
}
