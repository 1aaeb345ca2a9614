//! The OpenTelemetry propagator: extraction into a [`Context`], injection from one.

use std::fmt;
use std::str::FromStr;
use std::sync::LazyLock;

use opentelemetry::Context;
use opentelemetry::propagation::text_map_propagator::FieldIter;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt};

use super::context::{B3Context, Sampling};
use super::parse::{
    B3, Lookup, MalformedB3, X_B3_FLAGS, X_B3_PARENT_SPAN_ID, X_B3_SAMPLED, X_B3_SPAN_ID,
    X_B3_TRACE_ID, parse_headers,
};

/// Every header the propagator reads, in lower case.
pub(crate) const NAMES: [&str; 6] = [
    B3,
    X_B3_TRACE_ID,
    X_B3_SPAN_ID,
    X_B3_PARENT_SPAN_ID,
    X_B3_SAMPLED,
    X_B3_FLAGS,
];

static FIELDS: LazyLock<[String; 6]> = LazyLock::new(|| NAMES.map(str::to_owned));

/// Which encoding [`B3Propagator`] writes on outbound requests. Extraction always reads both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum B3Inject {
    /// The `X-B3-*` headers, which Envoy (and so Istio) reads and writes. The default.
    #[default]
    Multi,
    /// The single `b3` header.
    Single,
    /// Both encodings, for peers of either kind.
    Both,
}

impl B3Inject {
    fn multi(self) -> bool {
        matches!(self, Self::Multi | Self::Both)
    }

    fn single(self) -> bool {
        matches!(self, Self::Single | Self::Both)
    }
}

/// A B3 injection mode that is not `multi`, `single` or `both`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected multi, single or both")]
pub struct ParseB3InjectError;

impl FromStr for B3Inject {
    type Err = ParseB3InjectError;

    /// `multi`, `single` or `both`, in any case.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        [
            ("multi", Self::Multi),
            ("single", Self::Single),
            ("both", Self::Both),
        ]
        .into_iter()
        .find(|(name, _)| text.eq_ignore_ascii_case(name))
        .map(|(_, mode)| mode)
        .ok_or(ParseB3InjectError)
    }
}

impl fmt::Display for B3Inject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Multi => "multi",
            Self::Single => "single",
            Self::Both => "both",
        })
    }
}

/// B3 propagation that follows the specification; see the [module documentation](super) for the rules.
///
/// # Example
///
/// ```
/// use std::collections::HashMap;
/// use telemed_kit::opentelemetry::propagation::TextMapPropagator;
/// use telemed_kit::telemetry::trace::b3::{B3Context, B3Inject, B3Propagator, Sampling};
///
/// let propagator = B3Propagator::new(B3Inject::Single);
/// let inbound = HashMap::from([
///     ("x-b3-traceid".to_owned(), "463ac35c9f6413ad".to_owned()),
///     ("x-b3-spanid".to_owned(), "a2fb4a1d1a96d312".to_owned()),
/// ]);
/// let cx = propagator.extract(&inbound);
/// assert_eq!(cx.get::<B3Context>().unwrap().sampling(), Sampling::Defer);
///
/// let mut outbound = HashMap::new();
/// propagator.inject_context(&cx, &mut outbound);
/// assert_eq!(outbound["b3"], "463ac35c9f6413ad-a2fb4a1d1a96d312");
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct B3Propagator {
    inject: B3Inject,
}

impl B3Propagator {
    /// A propagator that writes `inject` on outbound requests.
    pub fn new(inject: B3Inject) -> Self {
        Self { inject }
    }

    /// The encoding written on outbound requests.
    pub fn inject_mode(&self) -> B3Inject {
        self.inject
    }

    /// Extracts from an HTTP header map without allocating; a value that is not visible ASCII is malformed
    /// rather than absent, which the [`Extractor`] interface cannot express.
    pub fn extract_from_headers(&self, cx: &Context, headers: &http::HeaderMap) -> Context {
        // One pass over the headers instead of a lookup per name: each lookup hashes its name, six a request,
        // while most names are told apart by their first bytes. The first value of a name wins, as with
        // `HeaderMap::get`.
        let mut values: [Option<&http::HeaderValue>; 6] = [None; 6];
        for (name, value) in headers {
            let name = name.as_str();
            if name != B3 && !name.starts_with("x-b3-") {
                continue;
            }
            if let Some(index) = NAMES.iter().position(|known| *known == name)
                && values[index].is_none()
            {
                values[index] = Some(value);
            }
        }
        self.extract_from(cx, |name| {
            let value = NAMES
                .iter()
                .position(|known| *known == name)
                .and_then(|index| values[index]);
            match value {
                None => Lookup::Absent,
                Some(value) => value.to_str().map_or(Lookup::Unreadable, Lookup::Value),
            }
        })
    }

    /// Extracts from name/value pairs such as a raw map or a message's headers: names match in any case, and
    /// the first pair with a name wins (for a `HashMap`, the first in its iteration order).
    pub fn extract_from_pairs<'a>(
        &self,
        cx: &Context,
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Context {
        let mut values: [Option<&'a str>; 6] = [None; 6];
        for (name, value) in pairs {
            if let Some(index) = NAMES
                .iter()
                .position(|known| name.eq_ignore_ascii_case(known))
                && values[index].is_none()
            {
                values[index] = Some(value);
            }
        }
        self.extract_from(cx, |name| {
            NAMES
                .iter()
                .position(|known| *known == name)
                .and_then(|index| values[index])
                .map_or(Lookup::Absent, Lookup::Value)
        })
    }

    fn extract_from<'a>(&self, cx: &Context, get: impl Fn(&'static str) -> Lookup<'a>) -> Context {
        match parse_headers(get) {
            Ok(Some(b3)) => with_b3(cx, b3),
            Ok(None) => cx.clone(),
            Err(reason) => ignore(cx, reason),
        }
    }
}

pub(crate) fn ignore(cx: &Context, reason: MalformedB3) -> Context {
    // The value itself is not logged: headers can carry anything, including personal data.
    tracing::debug!(%reason, "ignoring malformed B3 headers, starting a new trace");
    cx.clone()
}

pub(crate) fn with_b3(cx: &Context, b3: B3Context) -> Context {
    let cx = if !b3.is_sampling_only() {
        cx.with_remote_span_context(b3.span_context())
    } else if cx.has_active_span() {
        // A sampling-only header starts a new trace: no span in `cx` may act as its parent.
        cx.with_remote_span_context(SpanContext::empty_context())
    } else {
        cx.clone()
    };
    cx.with_value(b3)
}

impl TextMapPropagator for B3Propagator {
    /// Writes [`B3Context::outbound`] of `cx` in the configured encoding, with lower-case header names.
    fn inject_context(&self, cx: &Context, injector: &mut dyn Injector) {
        let Some(b3) = B3Context::outbound(cx) else {
            return;
        };
        injector.reserve(match self.inject {
            B3Inject::Multi => 4,
            B3Inject::Single => 1,
            B3Inject::Both => 5,
        });
        if self.inject.multi() {
            if let Some(trace_id) = b3.trace_id_text() {
                injector.set(X_B3_TRACE_ID, trace_id.as_str().to_owned());
            }
            if let Some(span_id) = b3.span_id() {
                injector.set(X_B3_SPAN_ID, hex(span_id));
            }
            if let Some(parent) = b3.parent_span_id() {
                injector.set(X_B3_PARENT_SPAN_ID, hex(parent));
            }
            match b3.sampling() {
                Sampling::Defer => {}
                Sampling::Deny => injector.set(X_B3_SAMPLED, "0".to_owned()),
                Sampling::Accept => injector.set(X_B3_SAMPLED, "1".to_owned()),
                // Debug implies accept, so the spec says not to send X-B3-Sampled with it.
                Sampling::Debug => injector.set(X_B3_FLAGS, "1".to_owned()),
            }
        }
        if self.inject.single() {
            injector.set(B3, b3.to_string());
        }
    }

    /// Reads `b3` or else the `X-B3-*` headers through [`Extractor::get`] with lower-case names (an HTTP header
    /// map matches any case). Only when that finds none of them does it list [`Extractor::keys`] to find the
    /// names in another case, for a carrier whose `get` is case-sensitive.
    fn extract_with_context(&self, cx: &Context, extractor: &dyn Extractor) -> Context {
        let direct = |name| extractor.get(name).map_or(Lookup::Absent, Lookup::Value);
        match parse_headers(direct) {
            Ok(Some(b3)) => with_b3(cx, b3),
            Err(reason) => ignore(cx, reason),
            Ok(None) => {
                let keys = extractor.keys();
                if !keys
                    .iter()
                    .any(|key| NAMES.iter().any(|name| key.eq_ignore_ascii_case(name)))
                {
                    return cx.clone();
                }
                self.extract_from(cx, |name| {
                    keys.iter()
                        .find(|key| key.eq_ignore_ascii_case(name))
                        .and_then(|key| extractor.get(key))
                        .map_or(Lookup::Absent, Lookup::Value)
                })
            }
        }
    }

    /// All six B3 header names in lower case, whatever the injection mode: extraction reads them all, and a
    /// proxy forwarding B3 must forward them all.
    fn fields(&self) -> FieldIter<'_> {
        FieldIter::new(FIELDS.as_slice())
    }
}

fn hex(id: SpanId) -> String {
    format!("{id:016x}")
}
