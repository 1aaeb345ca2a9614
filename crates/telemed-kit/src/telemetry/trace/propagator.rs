//! The kit's propagator: B3 and W3C Trace Context, read in one precedence chain and written together.

use std::fmt;
use std::str::FromStr;
use std::sync::LazyLock;

use opentelemetry::Context;
use opentelemetry::propagation::text_map_propagator::FieldIter;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{SpanContext, TraceContextExt, TraceState};

use super::b3::{self, B3Context, B3Propagator, Lookup, MalformedB3};
use super::w3c::{MalformedTraceparent, TRACEPARENT, TRACESTATE, Traceparent};

/// Which context wins when a request carries both a valid B3 trace and a valid `traceparent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Precedence {
    /// B3, which the platform's Istio writes. The default.
    #[default]
    B3,
    /// W3C Trace Context, for a mesh configured to trace with it.
    W3c,
}

/// A precedence that is not `b3` or `w3c`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected b3 or w3c")]
pub struct ParsePrecedenceError;

impl FromStr for Precedence {
    type Err = ParsePrecedenceError;

    /// `b3` or `w3c`, in any case.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.eq_ignore_ascii_case("b3") {
            Ok(Self::B3)
        } else if text.eq_ignore_ascii_case("w3c") {
            Ok(Self::W3c)
        } else {
            Err(ParsePrecedenceError)
        }
    }
}

impl fmt::Display for Precedence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::B3 => "b3",
            Self::W3c => "w3c",
        })
    }
}

/// Every header the propagator reads or writes, in lower case.
static FIELDS: LazyLock<Vec<String>> = LazyLock::new(|| {
    b3::NAMES
        .iter()
        .chain(&[TRACEPARENT, TRACESTATE])
        .map(|name| (*name).to_owned())
        .collect()
});

/// Trace propagation in both of the forms a request on the platform may carry: B3 (Istio's default) and W3C
/// Trace Context (`traceparent`, `tracestate`).
///
/// # Extraction: one precedence chain
///
/// With the default [`Precedence::B3`]:
/// 1. a valid single `b3` header;
/// 2. when it is malformed, valid multi `X-B3-*` headers of the same request (as Brave does), or the multi
///    headers alone when there is no `b3`;
/// 3. a valid `traceparent` (with its `tracestate`);
/// 4. else a new trace.
///
/// With [`Precedence::W3c`] a valid `traceparent` comes first, then B3 as in 1 and 2. Each encoding's rules
/// are its module's: [`b3`](super::b3) and [`w3c`](super::w3c); a malformed value is ignored, never joined,
/// and never fails the request. When B3 wins and `traceparent` carries the same trace, its `tracestate` is
/// kept, so that it goes on with the trace.
///
/// # Injection
///
/// An outbound request carries the trace in both forms with the same ids: B3 in the configured
/// [`B3Inject`](super::b3::B3Inject) encoding, and `traceparent` (version 00) with `tracestate` when there is one.
///
/// # Example
///
/// ```
/// use std::collections::HashMap;
/// use telemed_kit::opentelemetry::propagation::TextMapPropagator;
/// use telemed_kit::telemetry::trace::{Precedence, Propagator};
/// use telemed_kit::telemetry::trace::b3::{B3Inject, B3Propagator};
///
/// let propagator = Propagator::new(B3Propagator::new(B3Inject::Single), Precedence::B3);
/// let inbound = HashMap::from([
///     ("traceparent".to_owned(), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned()),
///     ("tracestate".to_owned(), "congo=t61rcWkgMzE".to_owned()),
/// ]);
/// let mut outbound = HashMap::new();
/// propagator.inject_context(&propagator.extract(&inbound), &mut outbound);
/// assert_eq!(outbound["b3"], "4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1");
/// assert_eq!(outbound["traceparent"], inbound["traceparent"]);
/// assert_eq!(outbound["tracestate"], inbound["tracestate"]);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Propagator {
    b3: B3Propagator,
    precedence: Precedence,
}

impl From<B3Propagator> for Propagator {
    /// `b3` with the default precedence (B3 first).
    fn from(b3: B3Propagator) -> Self {
        Self::new(b3, Precedence::default())
    }
}

impl Propagator {
    /// A propagator that writes B3 as `b3` says and decides between B3 and W3C by `precedence`.
    pub fn new(b3: B3Propagator, precedence: Precedence) -> Self {
        Self { b3, precedence }
    }

    /// The B3 part.
    pub fn b3(&self) -> B3Propagator {
        self.b3
    }

    /// Which context wins when both are valid.
    pub fn precedence(&self) -> Precedence {
        self.precedence
    }

    /// Extracts from an HTTP header map in one pass over it, without allocating for B3.
    pub fn extract_from_headers(&self, cx: &Context, headers: &http::HeaderMap) -> Context {
        // One pass instead of a lookup per name: each lookup hashes its name, eight a request, while most names
        // are told apart by their first bytes. The first value of a name wins, as with `HeaderMap::get`.
        let mut b3_values: [Option<&http::HeaderValue>; 6] = [None; 6];
        let (mut traceparent, mut tracestate) = (None, None);
        for (name, value) in headers {
            let name = name.as_str();
            if name.starts_with("x-b3-") || name == b3::B3 {
                if let Some(index) = b3::NAMES.iter().position(|known| *known == name)
                    && b3_values[index].is_none()
                {
                    b3_values[index] = Some(value);
                }
            } else if name == TRACEPARENT {
                traceparent = traceparent.or(Some(value));
            } else if name == TRACESTATE {
                tracestate = tracestate.or(Some(value));
            }
        }
        self.decide(
            cx,
            |name| {
                lookup(
                    b3::NAMES
                        .iter()
                        .position(|known| *known == name)
                        .and_then(|index| b3_values[index]),
                )
            },
            lookup(traceparent),
            // A tracestate that is not text is dropped like one OpenTelemetry's parser refuses.
            tracestate.and_then(|value| value.to_str().ok()),
        )
    }

    fn decide<'a>(
        &self,
        cx: &Context,
        b3_header: impl Fn(&'static str) -> Lookup<'a>,
        traceparent: Lookup<'_>,
        tracestate: Option<&str>,
    ) -> Context {
        let w3c = match traceparent {
            Lookup::Absent => None,
            Lookup::Unreadable => Some(Err(MalformedTraceparent::Unreadable)),
            Lookup::Value(value) => Some(Traceparent::parse(value)),
        };
        let w3c = match w3c {
            Some(Ok(parent)) => Some(parent),
            Some(Err(reason)) => {
                // The value itself is not logged: headers can carry anything, including personal data.
                tracing::debug!(%reason, "ignoring a malformed traceparent");
                None
            }
            None => None,
        };
        let trace_state = || {
            tracestate
                .and_then(|state| TraceState::from_str(state).ok())
                .unwrap_or(TraceState::NONE)
        };
        if self.precedence == Precedence::W3c
            && let Some(parent) = w3c
        {
            return cx.with_remote_span_context(parent.span_context(trace_state()));
        }
        match b3::parse_headers(b3_header) {
            Ok(Some(b3)) => {
                let cx = b3::with_b3(cx, b3);
                match w3c.filter(|parent| Some(parent.trace_id) == b3.trace_id()) {
                    Some(_) => with_trace_state(&cx, b3, trace_state()),
                    None => cx,
                }
            }
            Ok(None) => self.w3c_or_new(cx, w3c, trace_state, None),
            Err(reason) => self.w3c_or_new(cx, w3c, trace_state, Some(reason)),
        }
    }

    fn w3c_or_new(
        &self,
        cx: &Context,
        w3c: Option<Traceparent>,
        trace_state: impl FnOnce() -> TraceState,
        b3_refused: Option<MalformedB3>,
    ) -> Context {
        match (w3c, b3_refused) {
            (Some(parent), _) => cx.with_remote_span_context(parent.span_context(trace_state())),
            (None, Some(reason)) => b3::ignore(cx, reason),
            (None, None) => cx.clone(),
        }
    }
}

fn lookup(value: Option<&http::HeaderValue>) -> Lookup<'_> {
    match value {
        None => Lookup::Absent,
        Some(value) => value.to_str().map_or(Lookup::Unreadable, Lookup::Value),
    }
}

/// `cx` from `b3`, its remote span context carrying `trace_state`.
fn with_trace_state(cx: &Context, b3: B3Context, trace_state: TraceState) -> Context {
    let from_b3 = b3.span_context();
    let span_context = SpanContext::new(
        from_b3.trace_id(),
        from_b3.span_id(),
        from_b3.trace_flags(),
        true,
        trace_state,
    );
    cx.with_remote_span_context(span_context).with_value(b3)
}

impl TextMapPropagator for Propagator {
    /// Writes B3 (see [`B3Propagator`]) and `traceparent` and `tracestate` for the same span.
    fn inject_context(&self, cx: &Context, injector: &mut dyn Injector) {
        self.b3.inject_context(cx, injector);
        let span = cx.span();
        let span_context = span.span_context();
        if let Some(parent) = Traceparent::of(span_context) {
            injector.set(TRACEPARENT, parent.to_string());
            let state = span_context.trace_state().header();
            if !state.is_empty() {
                injector.set(TRACESTATE, state);
            }
        }
    }

    /// Reads the headers through [`Extractor::get`] with lower-case names, in the precedence chain of
    /// [`Propagator`]; B3 names in another case are found as [`B3Propagator`] finds them.
    fn extract_with_context(&self, cx: &Context, extractor: &dyn Extractor) -> Context {
        let keys = std::cell::OnceCell::new();
        let b3_header = |name: &'static str| {
            if let Some(value) = extractor.get(name) {
                return Lookup::Value(value);
            }
            // A case-sensitive carrier: list its keys once, only when a lower-case name was not found.
            keys.get_or_init(|| extractor.keys())
                .iter()
                .find(|key| key.eq_ignore_ascii_case(name))
                .and_then(|key| extractor.get(key))
                .map_or(Lookup::Absent, Lookup::Value)
        };
        let traceparent = extractor
            .get(TRACEPARENT)
            .map_or(Lookup::Absent, Lookup::Value);
        self.decide(cx, b3_header, traceparent, extractor.get(TRACESTATE))
    }

    /// The six B3 header names, `traceparent` and `tracestate`, in lower case: a proxy forwarding the trace must
    /// forward them all.
    fn fields(&self) -> FieldIter<'_> {
        FieldIter::new(FIELDS.as_slice())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use opentelemetry::trace::{Span as _, Tracer as _, TracerProvider as _};
    use opentelemetry_sdk::trace::SdkTracerProvider;

    use super::*;
    use crate::telemetry::trace::b3::B3Inject;

    const W3C_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const W3C_PARENT: &str = "00f067aa0ba902b7";
    const B3_TRACE: &str = "80f198ee56343ba864fe8b2a57d3eff7";
    const B3_SPAN: &str = "e457b5a2e4d86bd1";
    const STATE: &str = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7";

    fn traceparent(trace: &str, parent: &str, flags: &str) -> String {
        format!("00-{trace}-{parent}-{flags}")
    }

    /// What a request sent from `cx` with no local span carries, through both extraction paths, which must agree.
    fn outbound(precedence: Precedence, headers: &[(&str, &str)]) -> HashMap<String, String> {
        let propagator = Propagator::new(B3Propagator::new(B3Inject::Both), precedence);
        let mut map = http::HeaderMap::new();
        for (name, value) in headers {
            map.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                http::HeaderValue::from_str(value).unwrap(),
            );
        }
        let from_map = propagator.extract_from_headers(&Context::new(), &map);
        let pairs: HashMap<String, String> = headers
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect();
        let from_extractor = propagator.extract(&pairs);
        let mut sent = HashMap::new();
        propagator.inject_context(&from_map, &mut sent);
        let mut sent_again = HashMap::new();
        propagator.inject_context(&from_extractor, &mut sent_again);
        assert_eq!(
            sent, sent_again,
            "the two extraction paths differ for {headers:?}"
        );
        sent
    }

    fn trace_of(sent: &HashMap<String, String>) -> (Option<&str>, Option<&str>) {
        (
            sent.get("x-b3-traceid").map(String::as_str),
            sent.get("traceparent").map(String::as_str),
        )
    }

    #[test]
    fn the_precedence_chain_with_b3_first() {
        let w3c = traceparent(W3C_TRACE, W3C_PARENT, "01");
        let b3 = format!("{B3_TRACE}-{B3_SPAN}-1");
        let b3_traceparent = traceparent(B3_TRACE, B3_SPAN, "01");

        // 1. A valid b3 wins over a valid traceparent of another trace, whose tracestate stays behind.
        let sent = outbound(
            Precedence::B3,
            &[("b3", &b3), ("traceparent", &w3c), ("tracestate", STATE)],
        );
        assert_eq!(trace_of(&sent), (Some(B3_TRACE), Some(&*b3_traceparent)));
        assert_eq!(sent["b3"], b3);
        assert!(!sent.contains_key("tracestate"), "{sent:?}");

        // ... and keeps the tracestate of a traceparent of the same trace.
        let same = traceparent(B3_TRACE, "1111111111111111", "01");
        let sent = outbound(
            Precedence::B3,
            &[("b3", &b3), ("traceparent", &same), ("tracestate", STATE)],
        );
        assert_eq!(trace_of(&sent), (Some(B3_TRACE), Some(&*b3_traceparent)));
        assert_eq!(sent["tracestate"], STATE);

        // 2. A malformed b3: valid multi headers of the same request, before traceparent.
        let sent = outbound(
            Precedence::B3,
            &[
                ("b3", "garbage"),
                ("x-b3-traceid", B3_TRACE),
                ("x-b3-spanid", B3_SPAN),
                ("x-b3-sampled", "1"),
                ("traceparent", &w3c),
            ],
        );
        assert_eq!(trace_of(&sent), (Some(B3_TRACE), Some(&*b3_traceparent)));

        // 3. No valid B3 at all: traceparent and its tracestate, in both forms out.
        for b3_headers in [&[][..], &[("b3", "garbage")], &[("x-b3-traceid", "short")]] {
            let mut headers = b3_headers.to_vec();
            headers.extend([("traceparent", &*w3c), ("tracestate", STATE)]);
            let sent = outbound(Precedence::B3, &headers);
            assert_eq!(
                trace_of(&sent),
                (Some(W3C_TRACE), Some(&*w3c)),
                "{headers:?}"
            );
            assert_eq!(sent["x-b3-spanid"], W3C_PARENT);
            assert_eq!(sent["x-b3-sampled"], "1");
            assert_eq!(sent["tracestate"], STATE);
        }
        let unsampled = traceparent(W3C_TRACE, W3C_PARENT, "00");
        let sent = outbound(Precedence::B3, &[("traceparent", &unsampled)]);
        assert_eq!(sent["x-b3-sampled"], "0");
        assert_eq!(sent["traceparent"], unsampled);

        // 4. Nothing valid: a new trace, nothing sent on.
        let sent = outbound(
            Precedence::B3,
            &[
                ("b3", "garbage"),
                ("traceparent", "00-abc-def-01"),
                ("tracestate", STATE),
            ],
        );
        assert!(sent.is_empty(), "{sent:?}");
    }

    #[test]
    fn with_w3c_first_a_valid_traceparent_wins_and_b3_is_the_fallback() {
        let w3c = traceparent(W3C_TRACE, W3C_PARENT, "01");
        let b3 = format!("{B3_TRACE}-{B3_SPAN}-0");
        let sent = outbound(
            Precedence::W3c,
            &[("b3", &b3), ("traceparent", &w3c), ("tracestate", STATE)],
        );
        assert_eq!(trace_of(&sent), (Some(W3C_TRACE), Some(&*w3c)));
        assert_eq!(sent["tracestate"], STATE);
        let sent = outbound(
            Precedence::W3c,
            &[("b3", &b3), ("traceparent", "00-abc-def-01")],
        );
        assert_eq!(sent["b3"], b3);
    }

    #[test]
    fn malformed_traceparents_are_ignored_never_joined() {
        let upper = traceparent(&W3C_TRACE.to_uppercase(), W3C_PARENT, "01");
        let zero_trace = traceparent(&"0".repeat(32), W3C_PARENT, "01");
        let zero_parent = traceparent(W3C_TRACE, &"0".repeat(16), "01");
        let extra = format!("{}-extra", traceparent(W3C_TRACE, W3C_PARENT, "01"));
        let version_ff = format!("ff{}", &traceparent(W3C_TRACE, W3C_PARENT, "01")[2..]);
        let short = traceparent(&W3C_TRACE[1..], W3C_PARENT, "01");
        for bad in [
            &upper,
            &zero_trace,
            &zero_parent,
            &extra,
            &version_ff,
            &short,
        ] {
            for precedence in [Precedence::B3, Precedence::W3c] {
                let sent = outbound(precedence, &[("traceparent", bad), ("tracestate", STATE)]);
                assert!(sent.is_empty(), "{bad}: {sent:?}");
            }
        }
    }

    #[test]
    fn a_local_span_goes_out_in_both_forms_with_the_same_ids() {
        let propagator = Propagator::default();
        let provider = SdkTracerProvider::builder().build();
        let tracer = provider.tracer("test");
        let w3c = traceparent(W3C_TRACE, W3C_PARENT, "01");
        let inbound = propagator.extract(&HashMap::from([
            ("traceparent".to_owned(), w3c),
            ("tracestate".to_owned(), STATE.to_owned()),
        ]));
        let span = tracer.start_with_context("client", &inbound);
        let span_id = format!("{:016x}", span.span_context().span_id());
        let cx = inbound.with_span(span);
        let mut sent = HashMap::new();
        propagator.inject_context(&cx, &mut sent);
        assert_eq!(sent["x-b3-traceid"], W3C_TRACE);
        assert_eq!(sent["x-b3-spanid"], span_id);
        assert_eq!(sent["traceparent"], traceparent(W3C_TRACE, &span_id, "01"));
        assert_eq!(sent["tracestate"], STATE);
    }

    #[test]
    fn fields_name_every_header_read_and_precedence_parses() {
        let propagator = Propagator::default();
        let fields: Vec<&str> = propagator.fields().collect();
        assert_eq!(fields.len(), 8);
        assert!(fields.contains(&"traceparent") && fields.contains(&"tracestate"));
        assert!(fields.contains(&"b3") && fields.contains(&"x-b3-flags"));
        assert_eq!("W3C".parse(), Ok(Precedence::W3c));
        assert_eq!("b3".parse(), Ok(Precedence::B3));
        assert_eq!(
            "tracecontext".parse::<Precedence>(),
            Err(ParsePrecedenceError)
        );
    }
}
