//! W3C Trace Context (`traceparent`, `tracestate`), read as strictly as the recommendation asks.
//!
//! Istio can be configured to trace with W3C Trace Context instead of B3, and services outside the mesh often
//! send only `traceparent`. [`Traceparent::parse`] follows <https://www.w3.org/TR/trace-context/> section 3.2 and
//! its versioning rules; [`Propagator`](super::Propagator) decides between it and B3.
//!
//! # Why not opentelemetry_sdk's `TraceContextPropagator`
//!
//! Its 0.33 release joins traces the recommendation says to ignore: it checks no field's length (`00-abc-def-01`
//! gives trace id `0xabc`), lets a trailing `-` pass under version 00, takes a `+` sign before a hex field, and
//! accepts upper-case hex in the version. It also writes an empty `tracestate` header when there is none.
//!
//! # The rules
//! - `traceparent` is `{version}-{trace-id}-{parent-id}-{trace-flags}`: 2, 32, 16 and 2 lower-case hex digits.
//!   Spaces and tabs around the value are ignored, as HTTP ignores them.
//! - Version `ff` is invalid. Version `00` is exactly 55 characters: an extra field is invalid. A higher version
//!   may carry more fields after a `-`, which are ignored; one shorter than 55 characters is invalid.
//! - A trace id or parent id of all zeros is invalid.
//! - Of the flags, only `sampled` (bit 0) is taken; the others are dropped, as for version 00 they mean nothing.
//! - A malformed `traceparent` is ignored whole, and then so is `tracestate`: the request starts a new trace.
//! - `tracestate` is taken with a valid `traceparent` (OpenTelemetry's `TraceState` parser; a value it refuses
//!   is dropped) and passed on with the trace.

use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};

use super::b3::lower_hex;

/// The header that carries the trace id, the caller's span id and the sampling decision.
pub const TRACEPARENT: &str = "traceparent";
/// The header that carries vendor-specific trace data along with `traceparent`.
pub const TRACESTATE: &str = "tracestate";

/// The length of a version 00 `traceparent`, and the least a later version may have.
const LENGTH: usize = 55;

/// Why an inbound `traceparent` was ignored. The propagator never fails a request over it: it starts a new trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MalformedTraceparent {
    /// The value is not visible ASCII, spaces and tabs.
    #[error("traceparent is not visible ASCII")]
    Unreadable,
    /// The version is not two lower-case hex digits, or is `ff`.
    #[error("traceparent: the version is not valid")]
    Version,
    /// Shorter than 55 characters, or longer under version 00.
    #[error("traceparent: the length does not fit its version")]
    Length,
    /// A field is not followed by `-`.
    #[error("traceparent: a field is not followed by '-'")]
    Separator,
    /// The trace id is not 32 lower-case hex digits, or is all zeros.
    #[error("traceparent: the trace id is not valid")]
    TraceId,
    /// The parent id is not 16 lower-case hex digits, or is all zeros.
    #[error("traceparent: the parent id is not valid")]
    ParentId,
    /// The flags are not two lower-case hex digits.
    #[error("traceparent: the flags are not valid")]
    Flags,
}

/// A valid `traceparent`: the trace, the caller's span, and whether the caller sampled it.
///
/// # Example
///
/// ```
/// use telemed_kit::telemetry::trace::w3c::{MalformedTraceparent, Traceparent};
///
/// let parent = Traceparent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
/// assert!(parent.sampled);
/// assert_eq!(parent.to_string(), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
///
/// // Upper-case hex, an all-zero id, a fifth field under version 00: ignored.
/// for bad in [
///     "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
///     "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
///     "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
/// ] {
///     assert!(Traceparent::parse(bad).is_err(), "{bad}");
/// }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Traceparent {
    /// The trace id.
    pub trace_id: TraceId,
    /// The caller's span: the parent of the spans this service starts.
    pub parent_id: SpanId,
    /// The caller's sampling decision (`trace-flags` bit 0).
    pub sampled: bool,
}

impl Traceparent {
    /// Parses a `traceparent` value; see the [module documentation](self) for the rules.
    pub fn parse(value: &str) -> Result<Self, MalformedTraceparent> {
        let value = value.trim_matches([' ', '\t']);
        let bytes = value.as_bytes();
        // A later version's extra fields may hold anything an HTTP header value may, spaces included.
        if !bytes
            .iter()
            .all(|byte| byte.is_ascii_graphic() || matches!(byte, b' ' | b'\t'))
        {
            return Err(MalformedTraceparent::Unreadable);
        }
        let version = value
            .get(..2)
            .and_then(lower_hex)
            .filter(|version| *version != 0xff)
            .ok_or(MalformedTraceparent::Version)?;
        let fits = match version {
            0 => bytes.len() == LENGTH,
            _ => bytes.len() == LENGTH || (bytes.len() > LENGTH && bytes[LENGTH] == b'-'),
        };
        if !fits {
            return Err(MalformedTraceparent::Length);
        }
        if [2, 35, 52].iter().any(|at| bytes[*at] != b'-') {
            return Err(MalformedTraceparent::Separator);
        }
        let trace_id = lower_hex(&value[3..35])
            .filter(|id| *id != 0)
            .ok_or(MalformedTraceparent::TraceId)?;
        let parent_id = lower_hex(&value[36..52])
            .filter(|id| *id != 0)
            .ok_or(MalformedTraceparent::ParentId)?;
        let flags = lower_hex(&value[53..55]).ok_or(MalformedTraceparent::Flags)?;
        Ok(Self {
            trace_id: TraceId::from(trace_id),
            // 16 hex digits fit in 64 bits.
            parent_id: SpanId::from(parent_id as u64),
            sampled: flags & 1 == 1,
        })
    }

    /// The trace as a remote span context, with `trace_state`.
    pub fn span_context(&self, trace_state: TraceState) -> SpanContext {
        let flags = if self.sampled {
            TraceFlags::SAMPLED
        } else {
            TraceFlags::default()
        };
        SpanContext::new(self.trace_id, self.parent_id, flags, true, trace_state)
    }

    /// The `traceparent` for outbound requests from a span context; `None` when it is not valid.
    pub fn of(span_context: &SpanContext) -> Option<Self> {
        span_context.is_valid().then(|| Self {
            trace_id: span_context.trace_id(),
            parent_id: span_context.span_id(),
            sampled: span_context.is_sampled(),
        })
    }
}

/// Version 00, which is what this service writes whatever version it read.
impl std::fmt::Display for Traceparent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "00-{:032x}-{:016x}-{:02x}",
            self.trace_id,
            self.parent_id,
            u8::from(self.sampled)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const PARENT: &str = "00f067aa0ba902b7";

    fn parse(value: &str) -> Result<Traceparent, MalformedTraceparent> {
        Traceparent::parse(value)
    }

    #[test]
    fn the_recommendations_examples_and_its_versioning_rules() {
        let valid = format!("00-{TRACE}-{PARENT}-01");
        let parent = parse(&valid).unwrap();
        assert_eq!(format!("{:032x}", parent.trace_id), TRACE);
        assert_eq!(format!("{:016x}", parent.parent_id), PARENT);
        assert!(parent.sampled);
        assert_eq!(parent.to_string(), valid);
        assert!(!parse(&format!("00-{TRACE}-{PARENT}-00")).unwrap().sampled);
        // Unknown flags are dropped, sampled kept.
        let flagged = parse(&format!("00-{TRACE}-{PARENT}-ff")).unwrap();
        assert!(flagged.sampled);
        assert_eq!(flagged.to_string(), valid);
        // A later version with more fields is read by its first four; written back as version 00.
        let later = parse(&format!("cc-{TRACE}-{PARENT}-01-what the future: holds")).unwrap();
        assert_eq!(later.to_string(), valid);
        assert!(parse(&format!("cc-{TRACE}-{PARENT}-01")).is_ok());
        // Surrounding spaces and tabs are HTTP's, not the value's.
        assert!(parse(&format!(" \t00-{TRACE}-{PARENT}-01 ")).is_ok());
    }

    #[test]
    fn every_malformed_value_is_ignored_with_its_reason() {
        use MalformedTraceparent as M;
        let cases = [
            (format!("ff-{TRACE}-{PARENT}-01"), M::Version),
            (format!("0g-{TRACE}-{PARENT}-01"), M::Version),
            (format!("0A-{TRACE}-{PARENT}-01"), M::Version),
            (format!("+0-{TRACE}-{PARENT}-01"), M::Version),
            (format!("00-{TRACE}-{PARENT}-01-"), M::Length),
            (format!("00-{TRACE}-{PARENT}-01-extra"), M::Length),
            (format!("00-{TRACE}-{PARENT}-1"), M::Length),
            (format!("cc-{TRACE}-{PARENT}-01x"), M::Length),
            (format!("00-{}-{PARENT}-01", &TRACE[..31]), M::Length),
            ("00-abc-def-01".to_owned(), M::Length),
            (String::new(), M::Version),
            (format!("00_{TRACE}-{PARENT}-01"), M::Separator),
            (format!("00-{TRACE}_{PARENT}-01"), M::Separator),
            (
                format!("00-{}-{PARENT}-01", TRACE.to_uppercase()),
                M::TraceId,
            ),
            (format!("00-{}-{PARENT}-01", "0".repeat(32)), M::TraceId),
            (format!("00-+{}-{PARENT}-01", &TRACE[1..]), M::TraceId),
            (
                format!("00-{TRACE}-{}-01", PARENT.to_uppercase()),
                M::ParentId,
            ),
            (format!("00-{TRACE}-{}-01", "0".repeat(16)), M::ParentId),
            (format!("00-{TRACE}-{PARENT}-0x"), M::Flags),
            (format!("00-{TRACE}-{PARENT}-+1"), M::Flags),
            (format!("00-{TRACE}-{PARENT}-0\u{e9}"), M::Unreadable),
        ];
        for (value, reason) in cases {
            assert_eq!(parse(&value), Err(reason), "{value:?}");
        }
    }

    #[test]
    fn outbound_comes_from_the_span_context() {
        let parent = parse(&format!("00-{TRACE}-{PARENT}-01")).unwrap();
        let state: TraceState = "congo=t61rcWkgMzE".parse().unwrap();
        let span_context = parent.span_context(state.clone());
        assert!(span_context.is_remote() && span_context.is_sampled());
        assert_eq!(span_context.trace_state(), &state);
        assert_eq!(Traceparent::of(&span_context), Some(parent));
        assert_eq!(Traceparent::of(&SpanContext::empty_context()), None);
    }
}
