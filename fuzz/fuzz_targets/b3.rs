//! Fuzzes B3 extraction and injection with arbitrary header names and values.
//!
//! The input is read as HTTP-like lines, `name: value` (a line without `:` is a `b3` value), so the seed corpus
//! stays readable and the dictionary (`fuzz/b3.dict`) can splice real names and ids in. Every line an HTTP
//! header map accepts is appended in order, so repeats keep their order. The target then checks:
//!
//! - the header map, `Extractor` and raw-pairs entry points extract the same thing;
//! - a remote span context exists exactly when ids were extracted, sampled exactly for Accept and Debug;
//! - nothing is injected when nothing was extracted;
//! - in every mode, each injected header is well-formed B3: lower-case hex ids of the right length, never all
//!   zeros, `X-B3-Sampled` only `0`/`1` and never beside `X-B3-Flags: 1`, `b3` in the spec's grammar;
//! - the unchanged context re-emits what arrived: the inbound `b3` byte for byte, the inbound ids exactly, and
//!   it reads back as the same context;
//! - a local child span keeps the trace id in its inbound width, carries its own span id, and carries the
//!   inbound decision (Debug stays Debug) or, when deferred, its own.

#![no_main]

use std::collections::HashMap;
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use telemed_kit::axum::http::{HeaderMap, HeaderName, HeaderValue};
use telemed_kit::opentelemetry::Context;
use telemed_kit::opentelemetry::propagation::{Extractor, TextMapPropagator};
use telemed_kit::opentelemetry::trace::{Span, TraceContextExt, Tracer, TracerProvider};
use telemed_kit::opentelemetry_sdk::trace::SdkTracerProvider;
use telemed_kit::telemetry::trace::b3::{
    B3Context, B3Inject, B3Propagator, Sampling, trace_id_text,
};
use telemed_kit::telemetry::trace::{B3Sampler, SamplerSettings};

const NAMES: [&str; 6] = [
    "b3",
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-parentspanid",
    "x-b3-sampled",
    "x-b3-flags",
];
const MODES: [B3Inject; 3] = [B3Inject::Multi, B3Inject::Single, B3Inject::Both];

/// A provider with the B3 sampler at ratio one half, so deferred traces go both ways.
static PROVIDER: LazyLock<SdkTracerProvider> = LazyLock::new(|| {
    let mut settings = SamplerSettings::default();
    settings.ratio = 0.5;
    SdkTracerProvider::builder()
        .with_sampler(B3Sampler::new(&settings))
        .build()
});

#[path = "common/headers.rs"]
mod headers;

use headers::{HeaderExtractor, lines};

fuzz_target!(|data: &[u8]| check(data));

fn check(data: &[u8]) {
    let mut map = HeaderMap::new();
    let mut pairs: Vec<(&str, &str)> = Vec::new();
    // The Extractor interface cannot tell a non-text value from an absent one, so the entry points are only
    // compared when every B3 value is text.
    let mut comparable = true;
    for (name, value) in lines(data, b"b3") {
        let (Ok(header_name), Ok(header_value)) =
            (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
        else {
            continue;
        };
        // The same bytes as the header map holds, borrowed from the input rather than from the map.
        let text = header_value.to_str().is_ok();
        match (std::str::from_utf8(name), std::str::from_utf8(value)) {
            (Ok(name), Ok(value)) if text => pairs.push((name, value)),
            _ => comparable &= !NAMES.contains(&header_name.as_str()),
        }
        map.append(header_name, header_value);
    }

    let propagator = B3Propagator::default();
    let cx = propagator.extract_from_headers(&Context::new(), &map);
    let b3 = cx.get::<B3Context>().copied();
    if comparable {
        let via_extractor =
            propagator.extract_with_context(&Context::new(), &HeaderExtractor(&map));
        let via_pairs = propagator.extract_from_pairs(&Context::new(), pairs.iter().copied());
        assert_eq!(
            via_extractor.get::<B3Context>().copied(),
            b3,
            "Extractor path"
        );
        assert_eq!(via_pairs.get::<B3Context>().copied(), b3, "pairs path");
    }

    let Some(b3) = b3 else {
        assert!(!cx.has_active_span(), "no span without B3");
        for mode in MODES {
            assert!(inject(mode, &cx).is_empty(), "nothing to inject");
        }
        return;
    };

    let remote = cx.span().span_context().clone();
    assert_eq!(remote.is_valid(), !b3.is_sampling_only());
    if remote.is_valid() {
        assert!(remote.is_remote());
        assert_eq!(
            remote.is_sampled(),
            b3.sampling().is_sampled() == Some(true)
        );
        assert_eq!(Some(remote.trace_id()), b3.trace_id());
        assert_eq!(Some(remote.span_id()), b3.span_id());
    }
    check_unchanged(&cx, &b3, &map);
    check_local_child(&cx, &b3);
}

fn inject(mode: B3Inject, cx: &Context) -> HashMap<String, String> {
    let mut out = HashMap::new();
    B3Propagator::new(mode).inject_context(cx, &mut out);
    out
}

/// What arrived leaves unchanged when no local span was started.
fn check_unchanged(cx: &Context, b3: &B3Context, inbound: &HeaderMap) {
    let text = |name: &str| inbound.get(name).and_then(|value| value.to_str().ok());
    for mode in MODES {
        let out = inject(mode, cx);
        well_formed(&out, mode);
        if mode != B3Inject::Single {
            let again =
                B3Propagator::default().extract_with_context(&Context::new(), &MultiOnly(&out));
            assert_eq!(again.get::<B3Context>(), Some(b3), "multi round trip");
        }
        if mode == B3Inject::Multi && text("b3").is_none() {
            for name in ["x-b3-traceid", "x-b3-spanid", "x-b3-parentspanid"] {
                assert_eq!(
                    out.get(name).map(String::as_str),
                    text(name),
                    "{name} re-emitted"
                );
            }
        }
        if let Some(single) = out.get("b3") {
            let again = B3Context::parse_single(single).expect("injected b3 parses");
            assert_eq!(again.trace_id_text(), b3.trace_id_text());
            assert_eq!(again.span_id(), b3.span_id());
            assert_eq!(again.sampling(), b3.sampling());
            if b3.sampling() != Sampling::Defer {
                assert_eq!(again.parent_span_id(), b3.parent_span_id());
            }
            // A malformed b3 beside valid multi headers is not what the context came from.
            if let Some(inbound) = text("b3")
                && B3Context::parse_single(inbound).is_ok()
            {
                assert_eq!(single, inbound, "b3 re-emitted byte for byte");
            }
        }
    }
}

/// The multi headers of an injected map, so a re-extraction reads them and not the `b3` beside them.
struct MultiOnly<'a>(&'a HashMap<String, String>);

impl Extractor for MultiOnly<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        (key != "b3")
            .then(|| self.0.get(key).map(String::as_str))
            .flatten()
    }

    fn keys(&self) -> Vec<&str> {
        self.0
            .keys()
            .map(String::as_str)
            .filter(|key| *key != "b3")
            .collect()
    }
}

fn check_local_child(cx: &Context, b3: &B3Context) {
    let span = PROVIDER.tracer("fuzz").start_with_context("child", cx);
    let child = span.span_context().clone();
    match b3.sampling() {
        Sampling::Accept | Sampling::Debug => assert!(child.is_sampled(), "inbound accept is kept"),
        Sampling::Deny => assert!(!child.is_sampled(), "inbound deny is kept"),
        Sampling::Defer => {}
    }
    let child_cx = cx.with_span(span);
    let trace = match b3.trace_id_text() {
        Some(text) => text.to_string(),
        None => format!("{:032x}", child.trace_id()),
    };
    assert_eq!(trace_id_text(&child_cx).as_deref(), Some(trace.as_str()));
    for mode in MODES {
        let out = inject(mode, &child_cx);
        well_formed(&out, mode);
        let span_id = format!("{:016x}", child.span_id());
        let state = match (b3.sampling(), child.is_sampled()) {
            (Sampling::Debug, _) => "d",
            (_, true) => "1",
            (_, false) => "0",
        };
        if mode != B3Inject::Single {
            assert_eq!(out["x-b3-traceid"], trace);
            assert_eq!(out["x-b3-spanid"], span_id);
            assert!(!out.contains_key("x-b3-parentspanid"));
            match state {
                "d" => assert_eq!(out.get("x-b3-flags").map(String::as_str), Some("1")),
                _ => assert_eq!(out.get("x-b3-sampled").map(String::as_str), Some(state)),
            }
        }
        if mode != B3Inject::Multi {
            assert_eq!(out["b3"], format!("{trace}-{span_id}-{state}"));
        }
    }
}

/// Checks injected headers against the spec's grammar, independently of the kit's parser.
fn well_formed(out: &HashMap<String, String>, mode: B3Inject) {
    assert!(
        !out.is_empty(),
        "a context was extracted, so something travels"
    );
    for name in out.keys() {
        let allowed = match mode {
            B3Inject::Multi => name != "b3" && NAMES.contains(&name.as_str()),
            B3Inject::Single => name == "b3",
            B3Inject::Both => NAMES.contains(&name.as_str()),
        };
        assert!(allowed, "{name} in {mode} mode");
    }
    if mode != B3Inject::Single {
        let get = |name: &str| out.get(name).map(String::as_str);
        assert_eq!(get("x-b3-traceid").is_some(), get("x-b3-spanid").is_some());
        if let Some(trace) = get("x-b3-traceid") {
            assert!(id(trace, &[16, 32]), "trace id {trace:?}");
        }
        if let Some(span) = get("x-b3-spanid") {
            assert!(id(span, &[16]), "span id {span:?}");
        }
        if let Some(parent) = get("x-b3-parentspanid") {
            assert!(
                get("x-b3-spanid").is_some() && id(parent, &[16]),
                "parent {parent:?}"
            );
        }
        assert!(matches!(get("x-b3-sampled"), None | Some("0" | "1")));
        assert!(matches!(get("x-b3-flags"), None | Some("1")));
        assert!(!(get("x-b3-sampled").is_some() && get("x-b3-flags").is_some()));
        assert!(
            get("x-b3-sampled").is_some()
                || get("x-b3-flags").is_some()
                || get("x-b3-traceid").is_some()
        );
    }
    if mode != B3Inject::Multi {
        let single = &out["b3"];
        let fields: Vec<&str> = single.split('-').collect();
        let state = |field: &str| matches!(field, "0" | "1" | "d");
        let valid = match fields.as_slice() {
            [only] => state(only),
            [trace, span] => id(trace, &[16, 32]) && id(span, &[16]),
            [trace, span, sampling] => id(trace, &[16, 32]) && id(span, &[16]) && state(sampling),
            [trace, span, sampling, parent] => {
                id(trace, &[16, 32]) && id(span, &[16]) && state(sampling) && id(parent, &[16])
            }
            _ => false,
        };
        assert!(valid, "b3 {single:?}");
    }
}

fn id(text: &str, lengths: &[usize]) -> bool {
    lengths.contains(&text.len())
        && text
            .bytes()
            .all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f'))
        && text.bytes().any(|byte| byte != b'0')
}
