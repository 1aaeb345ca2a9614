//! Strict parsing of the single `b3` header and the multi `X-B3-*` headers, without allocation.

use opentelemetry::trace::{SpanId, TraceId};

use super::context::{B3Context, Sampling};

/// The single header.
pub const B3: &str = "b3";
/// The multi-header trace id.
pub const X_B3_TRACE_ID: &str = "x-b3-traceid";
/// The multi-header span id.
pub const X_B3_SPAN_ID: &str = "x-b3-spanid";
/// The multi-header parent span id.
pub const X_B3_PARENT_SPAN_ID: &str = "x-b3-parentspanid";
/// The multi-header sampling decision.
pub const X_B3_SAMPLED: &str = "x-b3-sampled";
/// The multi-header debug flag.
pub const X_B3_FLAGS: &str = "x-b3-flags";

/// A B3 field, named in [`MalformedB3`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum B3Field {
    /// The trace id: 16 or 32 lower-case hex digits, not all zeros.
    TraceId,
    /// The span id: 16 lower-case hex digits, not all zeros.
    SpanId,
    /// The parent span id: 16 lower-case hex digits, not all zeros.
    ParentSpanId,
    /// The sampling state: `1`, `0` or `d` in `b3`; `1` or `0` (legacy `true`, `false`) in `X-B3-Sampled`.
    Sampling,
}

impl B3Field {
    fn describe(self) -> &'static str {
        match self {
            Self::TraceId => "trace id",
            Self::SpanId => "span id",
            Self::ParentSpanId => "parent span id",
            Self::Sampling => "sampling state",
        }
    }
}

/// Why inbound B3 headers were ignored. The propagator never fails a request over it: it starts a new trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MalformedB3 {
    /// A header value is not visible ASCII (only detectable through
    /// [`B3Propagator::extract_from_headers`](super::B3Propagator::extract_from_headers)).
    #[error("{header} is not visible ASCII")]
    Unreadable {
        /// The header, in lower case.
        header: &'static str,
    },
    /// A field has the wrong length, a character that is not lower-case hex, an unknown sampling value, or is
    /// empty (as around a stray `-`).
    #[error("{header}: the {} is not valid", field.describe())]
    Invalid {
        /// The header, in lower case.
        header: &'static str,
        /// The field.
        field: B3Field,
    },
    /// An id is all zeros, which B3 reserves for "no id".
    #[error("{header}: the {} is all zeros", field.describe())]
    ZeroId {
        /// The header, in lower case.
        header: &'static str,
        /// The field.
        field: B3Field,
    },
    /// A required id is missing: a trace id without a span id, or the reverse, or a parent without both.
    #[error("{header}: the {} is missing", field.describe())]
    Missing {
        /// The header, in lower case.
        header: &'static str,
        /// The missing field.
        field: B3Field,
    },
    /// `b3` has more than four `-`-separated fields.
    #[error("b3 has more than four fields")]
    TooManyFields,
}

/// The multi-header values as received (first value of each), `None` when absent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MultiHeaders<'a> {
    /// `X-B3-TraceId`.
    pub trace_id: Option<&'a str>,
    /// `X-B3-SpanId`.
    pub span_id: Option<&'a str>,
    /// `X-B3-ParentSpanId`.
    pub parent_span_id: Option<&'a str>,
    /// `X-B3-Sampled`.
    pub sampled: Option<&'a str>,
    /// `X-B3-Flags`.
    pub flags: Option<&'a str>,
}

impl MultiHeaders<'_> {
    fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

impl B3Context {
    /// Parses a `b3` header value: `{trace}-{span}[-{1|0|d}[-{parent}]]`, or `0`, `1` or `d` alone.
    ///
    /// The grammar is positional, so a parent id needs a sampling state before it: `{trace}-{span}-{parent}` is
    /// malformed (its third field is not a sampling state).
    pub fn parse_single(value: &str) -> Result<Self, MalformedB3> {
        let header = B3;
        if value.len() == 1 {
            return sampling_char(value).and_then(Self::sampling_only).ok_or(
                MalformedB3::Invalid {
                    header,
                    field: B3Field::Sampling,
                },
            );
        }
        let mut fields = value.split('-');
        let (trace_id, trace_id_64) = parse_trace_id(fields.next().unwrap_or_default(), header)?;
        let span_id = match fields.next() {
            Some(span) => parse_span_id(span, header, B3Field::SpanId)?,
            None => {
                return Err(MalformedB3::Missing {
                    header,
                    field: B3Field::SpanId,
                });
            }
        };
        let sampling = match fields.next() {
            None => Sampling::Defer,
            Some(state) => sampling_char(state).ok_or(MalformedB3::Invalid {
                header,
                field: B3Field::Sampling,
            })?,
        };
        let parent = fields
            .next()
            .map(|parent| parse_span_id(parent, header, B3Field::ParentSpanId))
            .transpose()?;
        if fields.next().is_some() {
            return Err(MalformedB3::TooManyFields);
        }
        ids(trace_id, trace_id_64, span_id, parent, sampling, header)
    }

    /// Parses the multi headers; `Ok(None)` when they say nothing (all absent, or only an ignored `X-B3-Flags`).
    ///
    /// - `X-B3-Sampled` is `1` or `0`; the legacy `true` and `false` are accepted (the spec allows a lenient
    ///   reader) and re-emitted as `1` and `0`. Anything else is malformed.
    /// - `X-B3-Flags: 1` is debug and wins over `X-B3-Sampled`; any other flags value is ignored, as the spec says.
    /// - `X-B3-TraceId` and `X-B3-SpanId` come together; `X-B3-ParentSpanId` only with both.
    /// - Only `X-B3-Sampled` and/or `X-B3-Flags: 1`: a sampling-only context.
    pub fn parse_multi(headers: MultiHeaders<'_>) -> Result<Option<Self>, MalformedB3> {
        let sampled = match headers.sampled {
            None => None,
            Some("1" | "true") => Some(Sampling::Accept),
            Some("0" | "false") => Some(Sampling::Deny),
            Some(_) => {
                return Err(MalformedB3::Invalid {
                    header: X_B3_SAMPLED,
                    field: B3Field::Sampling,
                });
            }
        };
        let sampling = if headers.flags == Some("1") {
            Sampling::Debug
        } else {
            sampled.unwrap_or(Sampling::Defer)
        };
        match (headers.trace_id, headers.span_id) {
            (None, None) => match headers.parent_span_id {
                Some(_) => Err(MalformedB3::Missing {
                    header: X_B3_TRACE_ID,
                    field: B3Field::TraceId,
                }),
                None => Ok(Self::sampling_only(sampling)),
            },
            (Some(_), None) => Err(MalformedB3::Missing {
                header: X_B3_SPAN_ID,
                field: B3Field::SpanId,
            }),
            (None, Some(_)) => Err(MalformedB3::Missing {
                header: X_B3_TRACE_ID,
                field: B3Field::TraceId,
            }),
            (Some(trace), Some(span)) => {
                let (trace_id, trace_id_64) = parse_trace_id(trace, X_B3_TRACE_ID)?;
                let span_id = parse_span_id(span, X_B3_SPAN_ID, B3Field::SpanId)?;
                let parent = headers
                    .parent_span_id
                    .map(|parent| parse_span_id(parent, X_B3_PARENT_SPAN_ID, B3Field::ParentSpanId))
                    .transpose()?;
                ids(
                    trace_id,
                    trace_id_64,
                    span_id,
                    parent,
                    sampling,
                    X_B3_SPAN_ID,
                )
                .map(Some)
            }
        }
    }
}

/// Where the inbound headers come from: the first value of each name, or that it cannot be read as text.
pub(crate) enum Lookup<'a> {
    Absent,
    Value(&'a str),
    Unreadable,
}

/// What the headers say: a valid `b3` decides; when it is malformed, valid `X-B3-*` headers of the same request
/// decide instead (as Brave does); when those are malformed or absent too, the reason `b3` was refused.
pub(crate) fn parse_headers<'a>(
    get: impl Fn(&'static str) -> Lookup<'a>,
) -> Result<Option<B3Context>, MalformedB3> {
    let single = match get(B3) {
        Lookup::Value(value) => match B3Context::parse_single(value) {
            Ok(b3) => return Ok(Some(b3)),
            Err(reason) => Some(reason),
        },
        Lookup::Unreadable => Some(MalformedB3::Unreadable { header: B3 }),
        Lookup::Absent => None,
    };
    match (parse_multi_headers(get), single) {
        (Ok(Some(b3)), _) => Ok(Some(b3)),
        (_, Some(reason)) => Err(reason),
        (multi, None) => multi,
    }
}

fn parse_multi_headers<'a>(
    get: impl Fn(&'static str) -> Lookup<'a>,
) -> Result<Option<B3Context>, MalformedB3> {
    let readable = |name| match get(name) {
        Lookup::Absent => Ok(None),
        Lookup::Value(value) => Ok(Some(value)),
        Lookup::Unreadable => Err(MalformedB3::Unreadable { header: name }),
    };
    let headers = MultiHeaders {
        trace_id: readable(X_B3_TRACE_ID)?,
        span_id: readable(X_B3_SPAN_ID)?,
        parent_span_id: readable(X_B3_PARENT_SPAN_ID)?,
        sampled: readable(X_B3_SAMPLED)?,
        // Any flags value but `1` is ignored, so an unreadable one is too.
        flags: readable(X_B3_FLAGS).unwrap_or(None),
    };
    if headers.is_empty() {
        return Ok(None);
    }
    B3Context::parse_multi(headers)
}

fn ids(
    trace_id: TraceId,
    trace_id_64: bool,
    span_id: SpanId,
    parent: Option<SpanId>,
    sampling: Sampling,
    header: &'static str,
) -> Result<B3Context, MalformedB3> {
    // Every id was checked non-zero already, so this cannot fail; the error keeps that a non-panicking promise.
    B3Context::from_parts(trace_id, trace_id_64, span_id, parent, sampling).ok_or(
        MalformedB3::ZeroId {
            header,
            field: B3Field::SpanId,
        },
    )
}

fn sampling_char(value: &str) -> Option<Sampling> {
    match value {
        "0" => Some(Sampling::Deny),
        "1" => Some(Sampling::Accept),
        "d" => Some(Sampling::Debug),
        _ => None,
    }
}

fn parse_trace_id(text: &str, header: &'static str) -> Result<(TraceId, bool), MalformedB3> {
    let field = B3Field::TraceId;
    if text.len() != 16 && text.len() != 32 {
        return Err(MalformedB3::Invalid { header, field });
    }
    let value = lower_hex(text).ok_or(MalformedB3::Invalid { header, field })?;
    if value == 0 {
        return Err(MalformedB3::ZeroId { header, field });
    }
    Ok((TraceId::from(value), text.len() == 16))
}

fn parse_span_id(text: &str, header: &'static str, field: B3Field) -> Result<SpanId, MalformedB3> {
    if text.len() != 16 {
        return Err(MalformedB3::Invalid { header, field });
    }
    let value = lower_hex(text).ok_or(MalformedB3::Invalid { header, field })?;
    if value == 0 {
        return Err(MalformedB3::ZeroId { header, field });
    }
    // 16 hex digits always fit in 64 bits.
    Ok(SpanId::from(value as u64))
}

/// Lower-case hex of at most 32 digits; `u128::from_str_radix` would also take upper case and a `+` sign. W3C's
/// `traceparent` fields follow the same rule.
pub(crate) fn lower_hex(text: &str) -> Option<u128> {
    text.bytes().try_fold(0u128, |value, byte| {
        let digit = match byte {
            b'0'..=b'9' => byte - b'0',
            b'a'..=b'f' => byte - b'a' + 10,
            _ => return None,
        };
        Some(value << 4 | u128::from(digit))
    })
}
