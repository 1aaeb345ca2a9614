//! [`B3Sampler`]: the parent-based sampler that keeps the caller's B3 decision.

use opentelemetry::trace::{Link, SpanKind, TraceContextExt, TraceId, TraceState};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{Sampler, SamplingDecision, SamplingResult, ShouldSample};

use super::b3::{B3Context, Sampling};
use crate::config::{ConfigError, Env};

/// The attribute that marks a span of a B3 debug trace (`X-B3-Flags: 1`, `b3: ...-d`).
///
/// OpenTelemetry's span has no debug flag; the exporter turns this attribute into Zipkin's `"debug": true` and
/// leaves it out of the tags.
pub const DEBUG_ATTRIBUTE: &str = "b3.debug";

/// Sampler settings.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct SamplerSettings {
    /// `OTEL_TRACES_SAMPLER_ARG`: the share of new traces (and deferred inbound ones) to sample, from 0 to 1.
    /// Defaults to `1.0`.
    pub ratio: f64,
}

impl Default for SamplerSettings {
    fn default() -> Self {
        Self { ratio: 1.0 }
    }
}

impl SamplerSettings {
    /// Reads `OTEL_TRACES_SAMPLER_ARG`.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let ratio = env
            .parse_with(
                "OTEL_TRACES_SAMPLER_ARG",
                "a sampling ratio from 0 to 1, such as 0.25",
                |raw| {
                    raw.parse::<f64>()
                        .ok()
                        .filter(|ratio| (0.0..=1.0).contains(ratio))
                },
            )?
            .unwrap_or(1.0);
        Ok(Self { ratio })
    }
}

/// The B3-aware parent-based sampler: it honours every B3 sampling state.
///
/// OpenTelemetry's `ParentBased` sampler sees only the remote span's sampled bit, so a deferred B3 decision (no
/// `X-B3-Sampled`) looks like "not sampled" and the trace is dropped, and a sampling-only `b3: 0` is not seen at
/// all. It reads the [`B3Context`] that [`B3Propagator`](super::b3::B3Propagator) leaves in the parent
/// context instead. For each new span, the first rule that applies decides:
///
/// 1. A valid **local** parent span: follow its sampled flag, so a trace is never cut in half inside a process.
/// 2. An inbound [`B3Context`] for this trace (same trace id, or sampling-only): Accept and Debug record and
///    sample, Deny drops, Defer asks the root ratio sampler.
/// 3. A valid remote parent from another propagator: follow its sampled flag.
/// 4. Otherwise (a root): `TraceIdRatioBased(ratio)`, with the ratio from `OTEL_TRACES_SAMPLER_ARG`.
///
/// # Example
///
/// ```
/// use std::collections::HashMap;
/// use telemed_kit::config::Env;
/// use telemed_kit::opentelemetry::propagation::TextMapPropagator;
/// use telemed_kit::opentelemetry::trace::{Span, Tracer, TracerProvider};
/// use telemed_kit::opentelemetry_sdk::trace::SdkTracerProvider;
/// use telemed_kit::telemetry::trace::b3::B3Propagator;
/// use telemed_kit::telemetry::trace::{B3Sampler, SamplerSettings};
///
/// let settings = SamplerSettings::from_env(&Env::from_pairs([("OTEL_TRACES_SAMPLER_ARG", "0")])).unwrap();
/// let provider = SdkTracerProvider::builder().with_sampler(B3Sampler::new(&settings)).build();
/// let tracer = provider.tracer("example");
///
/// // Deferred: the ratio (0 here) decides.
/// let headers = HashMap::from([("b3".to_owned(), "463ac35c9f6413ad-a2fb4a1d1a96d312".to_owned())]);
/// let span = tracer.start_with_context("request", &B3Propagator::default().extract(&headers));
/// assert!(!span.span_context().is_sampled());
///
/// // Accepted upstream: sampled whatever the ratio.
/// let headers = HashMap::from([("b3".to_owned(), "463ac35c9f6413ad-a2fb4a1d1a96d312-1".to_owned())]);
/// let span = tracer.start_with_context("request", &B3Propagator::default().extract(&headers));
/// assert!(span.span_context().is_sampled());
/// ```
#[derive(Debug, Clone)]
pub struct B3Sampler {
    root: Sampler,
}

impl B3Sampler {
    /// A sampler whose root decisions sample `settings.ratio` of traces.
    pub fn new(settings: &SamplerSettings) -> Self {
        Self {
            root: Sampler::TraceIdRatioBased(settings.ratio),
        }
    }

    fn decide(&self, parent: Option<&Context>, trace_id: TraceId) -> SamplingDecision {
        let by_flag = |sampled: bool| {
            if sampled {
                SamplingDecision::RecordAndSample
            } else {
                SamplingDecision::Drop
            }
        };
        let Some(parent) = parent else {
            return self.root_decision(trace_id);
        };
        let span = parent.span();
        let span_context = span.span_context();
        if span_context.is_valid() && !span_context.is_remote() {
            return by_flag(span_context.is_sampled());
        }
        let inbound = parent
            .get::<B3Context>()
            .filter(|b3| b3.trace_id().is_none_or(|id| id == trace_id));
        match inbound.map(B3Context::sampling) {
            Some(Sampling::Accept | Sampling::Debug) => SamplingDecision::RecordAndSample,
            Some(Sampling::Deny) => SamplingDecision::Drop,
            Some(Sampling::Defer) => self.root_decision(trace_id),
            None if span_context.is_valid() => by_flag(span_context.is_sampled()),
            None => self.root_decision(trace_id),
        }
    }

    fn root_decision(&self, trace_id: TraceId) -> SamplingDecision {
        self.root
            .should_sample(None, trace_id, "", &SpanKind::Internal, &[], &[])
            .decision
    }
}

impl ShouldSample for B3Sampler {
    fn should_sample(
        &self,
        parent_context: Option<&Context>,
        trace_id: TraceId,
        _name: &str,
        _span_kind: &SpanKind,
        _attributes: &[KeyValue],
        _links: &[Link],
    ) -> SamplingResult {
        let decision = self.decide(parent_context, trace_id);
        // Every span of a debug trace carries the marker, the client spans too: their local parent's context
        // still holds the inbound B3 context.
        let debug = decision == SamplingDecision::RecordAndSample
            && parent_context
                .and_then(|cx| cx.get::<B3Context>())
                .is_some_and(|b3| {
                    b3.sampling() == Sampling::Debug
                        && b3.trace_id().is_none_or(|id| id == trace_id)
                });
        SamplingResult {
            decision,
            attributes: if debug {
                vec![KeyValue::new(DEBUG_ATTRIBUTE, true)]
            } else {
                Vec::new()
            },
            trace_state: parent_context
                .map(|cx| cx.span().span_context().trace_state().clone())
                .unwrap_or(TraceState::NONE),
        }
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::{SpanContext, TraceFlags, Tracer, TracerProvider};
    use opentelemetry_sdk::trace::SdkTracerProvider;

    use super::*;
    use crate::telemetry::trace::b3::B3Propagator;

    /// A 128-bit trace id whose low half is all ones: `TraceIdRatioBased` samples it only at ratio 1.
    const UNLUCKY: &str = "463ac35c9f6413adffffffffffffffff";
    /// A trace id whose low half is zero: sampled at any ratio above 0.
    const LUCKY: &str = "463ac35c9f6413ad0000000000000000";
    const SPAN: &str = "a2fb4a1d1a96d312";

    fn provider(ratio: f64) -> SdkTracerProvider {
        SdkTracerProvider::builder()
            .with_sampler(B3Sampler::new(&SamplerSettings { ratio }))
            .build()
    }

    fn extract(pairs: &[(&str, &str)]) -> Context {
        B3Propagator::default().extract_from_pairs(&Context::new(), pairs.iter().copied())
    }

    /// Starts a real SDK span under `parent` and reports (sampled, recording).
    fn start(provider: &SdkTracerProvider, parent: &Context) -> (bool, bool) {
        use opentelemetry::trace::Span;
        let span = provider.tracer("test").start_with_context("span", parent);
        (span.span_context().is_sampled(), span.is_recording())
    }

    #[test]
    fn inbound_decisions_override_the_ratio_and_defer_uses_it() {
        let never = provider(0.5);
        let single = |value: &str| extract(&[("b3", value)]);
        // Accept and Debug are sampled although the ratio would drop this trace id.
        assert_eq!(
            start(&never, &single(&format!("{UNLUCKY}-{SPAN}-1"))),
            (true, true)
        );
        assert_eq!(
            start(&never, &single(&format!("{UNLUCKY}-{SPAN}-d"))),
            (true, true)
        );
        // Deny is dropped although the ratio would sample this trace id.
        assert_eq!(
            start(&never, &single(&format!("{LUCKY}-{SPAN}-0"))),
            (false, false)
        );
        // Defer: the ratio decides, both ways.
        assert_eq!(
            start(&never, &single(&format!("{UNLUCKY}-{SPAN}"))),
            (false, false)
        );
        assert_eq!(
            start(&never, &single(&format!("{LUCKY}-{SPAN}"))),
            (true, true)
        );
        // The multi encoding gives the same answers.
        let multi = |sampled: Option<&str>, flags: Option<&str>| {
            let mut headers = vec![("X-B3-TraceId", UNLUCKY), ("X-B3-SpanId", SPAN)];
            headers.extend(sampled.map(|value| ("X-B3-Sampled", value)));
            headers.extend(flags.map(|value| ("X-B3-Flags", value)));
            extract(&headers)
        };
        assert_eq!(start(&never, &multi(Some("1"), None)), (true, true));
        assert_eq!(start(&never, &multi(None, Some("1"))), (true, true));
        assert_eq!(start(&never, &multi(None, None)), (false, false));
        assert_eq!(start(&provider(1.0), &multi(None, None)), (true, true));
        assert_eq!(
            start(&provider(1.0), &multi(Some("0"), None)),
            (false, false)
        );
    }

    #[test]
    fn sampling_only_headers_decide_the_new_root() {
        let always = provider(1.0);
        let never = provider(0.0);
        assert_eq!(start(&always, &extract(&[("b3", "0")])), (false, false));
        assert_eq!(
            start(&always, &extract(&[("x-b3-sampled", "0")])),
            (false, false)
        );
        assert_eq!(start(&never, &extract(&[("b3", "1")])), (true, true));
        assert_eq!(start(&never, &extract(&[("b3", "d")])), (true, true));
        assert_eq!(
            start(&never, &extract(&[("x-b3-flags", "1")])),
            (true, true)
        );
    }

    #[test]
    fn a_local_parent_is_followed_whatever_the_inbound_decision() {
        let always = provider(1.0);
        let tracer = always.tracer("test");
        // The inbound trace is denied, but a local parent that was sampled (say, by a custom rule) is followed.
        let inbound = extract(&[("b3", &format!("{LUCKY}-{SPAN}-0"))]);
        let local = SpanContext::new(
            TraceId::from_hex(LUCKY).unwrap(),
            opentelemetry::trace::SpanId::from(7),
            TraceFlags::SAMPLED,
            false,
            TraceState::NONE,
        );
        let parent = inbound.with_remote_span_context(local);
        assert_eq!(start(&always, &parent), (true, true));

        // And a child of a dropped local span stays dropped even when the inbound decision was accept.
        let inbound = extract(&[("b3", &format!("{LUCKY}-{SPAN}-1"))]);
        let dropped = SpanContext::new(
            TraceId::from_hex(LUCKY).unwrap(),
            opentelemetry::trace::SpanId::from(7),
            TraceFlags::NOT_SAMPLED,
            false,
            TraceState::NONE,
        );
        assert_eq!(
            start(&always, &inbound.with_remote_span_context(dropped)),
            (false, false)
        );

        // Through the SDK: children of a sampled local span are sampled, at any ratio.
        let never = provider(0.0);
        let root = tracer.start_with_context("root", &extract(&[("b3", "1")]));
        let cx = Context::new().with_span(root);
        assert_eq!(start(&never, &cx), (true, true));
    }

    #[test]
    fn without_b3_it_is_parent_based_with_a_ratio_root() {
        assert_eq!(start(&provider(1.0), &Context::new()), (true, true));
        assert_eq!(start(&provider(0.0), &Context::new()), (false, false));
        let decide = |ratio: f64, trace: &str| {
            B3Sampler::new(&SamplerSettings { ratio })
                .should_sample(
                    None,
                    TraceId::from_hex(trace).unwrap(),
                    "root",
                    &SpanKind::Server,
                    &[],
                    &[],
                )
                .decision
        };
        assert_eq!(decide(0.5, LUCKY), SamplingDecision::RecordAndSample);
        assert_eq!(decide(0.5, UNLUCKY), SamplingDecision::Drop);
        assert_eq!(decide(1.0, UNLUCKY), SamplingDecision::RecordAndSample);
        assert_eq!(decide(0.0, LUCKY), SamplingDecision::Drop);

        // A remote parent from another propagator (no B3Context): its flag decides.
        let remote = |flags| {
            Context::new().with_remote_span_context(SpanContext::new(
                TraceId::from_hex(UNLUCKY).unwrap(),
                opentelemetry::trace::SpanId::from(9),
                flags,
                true,
                TraceState::NONE,
            ))
        };
        assert_eq!(
            start(&provider(0.0), &remote(TraceFlags::SAMPLED)),
            (true, true)
        );
        assert_eq!(
            start(&provider(1.0), &remote(TraceFlags::NOT_SAMPLED)),
            (false, false)
        );
    }

    #[test]
    fn an_inbound_decision_for_another_trace_is_not_applied() {
        // A B3Context left in a context whose span belongs to another trace says nothing about that trace.
        let inbound = extract(&[("b3", &format!("{LUCKY}-{SPAN}-0"))]);
        let other = SpanContext::new(
            TraceId::from_hex(UNLUCKY).unwrap(),
            opentelemetry::trace::SpanId::from(9),
            TraceFlags::SAMPLED,
            true,
            TraceState::NONE,
        );
        assert_eq!(
            start(&provider(0.0), &inbound.with_remote_span_context(other)),
            (true, true)
        );
    }

    #[test]
    fn settings_read_the_ratio_and_reject_bad_values() {
        let read = |value: &str| {
            SamplerSettings::from_env(&Env::from_pairs([("OTEL_TRACES_SAMPLER_ARG", value)]))
        };
        assert_eq!(
            SamplerSettings::from_env(&Env::from_pairs::<&str, &str>([]))
                .unwrap()
                .ratio,
            1.0
        );
        assert_eq!(read("0.25").unwrap().ratio, 0.25);
        assert_eq!(read("0").unwrap().ratio, 0.0);
        assert_eq!(read("1").unwrap().ratio, 1.0);
        for bad in ["1.5", "-0.1", "NaN", "inf", "half"] {
            assert_eq!(
                read(bad).unwrap_err().to_string(),
                format!(
                    "OTEL_TRACES_SAMPLER_ARG={bad:?}: expected a sampling ratio from 0 to 1, such as 0.25"
                )
            );
        }
    }
}
