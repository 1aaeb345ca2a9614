//! Fuzzes the kit's propagator, B3 and W3C Trace Context together, with arbitrary header names and values.
//!
//! The input is read as HTTP-like lines, `name: value` (a line without `:` is a `traceparent` value), so the seed
//! corpus stays readable and the dictionary (`fuzz/trace_context.dict`) can splice real names and ids in. The
//! target checks, for both precedences:
//!
//! - `Traceparent::parse` accepts exactly what the recommendation's grammar (written out again here, apart
//!   from the kit's parser) allows, and what it accepts it writes back as the same version 00 value;
//! - the header map and `Extractor` entry points send the same headers on;
//! - whatever is sent on is well-formed: a `traceparent` of version 00 with lower-case, non-zero ids, and the
//!   same trace and span ids as the B3 headers beside it;
//! - a valid `traceparent` with no valid B3 beside it (or with `w3c` first) is what goes on, normalised.

#![no_main]

use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;
use telemed_kit::axum::http::{HeaderMap, HeaderName, HeaderValue};
use telemed_kit::opentelemetry::Context;
use telemed_kit::opentelemetry::propagation::TextMapPropagator;
use telemed_kit::telemetry::trace::b3::{B3Context, B3Inject, B3Propagator};
use telemed_kit::telemetry::trace::w3c::Traceparent;
use telemed_kit::telemetry::trace::{Precedence, Propagator};

#[path = "common/headers.rs"]
mod headers;

use headers::{HeaderExtractor, lines};

fuzz_target!(|data: &[u8]| check(data));

/// The recommendation's grammar for `traceparent` (section 3.2 and its versioning rules), as a reference.
fn grammar_allows(value: &str) -> bool {
    let value = value.trim_matches([' ', '\t']);
    let hex = |text: &str| {
        !text.is_empty() && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    let nonzero = |text: &str| text.bytes().any(|b| b != b'0');
    let text = |b: u8| b.is_ascii_graphic() || b == b' ' || b == b'\t';
    if !value.bytes().all(text) || value.len() < 55 {
        return false;
    }
    let (version, rest) = value.split_at(2);
    if !hex(version) || version == "ff" {
        return false;
    }
    let fields: Vec<&str> = rest.splitn(5, '-').collect();
    let (trace, parent, flags) = match fields.as_slice() {
        ["", trace, parent, flags] => (*trace, *parent, *flags),
        ["", trace, parent, flags, _] if version != "00" => (*trace, *parent, *flags),
        _ => return false,
    };
    trace.len() == 32
        && parent.len() == 16
        && flags.len() == 2
        && hex(trace)
        && hex(parent)
        && hex(flags)
        && nonzero(trace)
        && nonzero(parent)
}

fn check(data: &[u8]) {
    let mut map = HeaderMap::new();
    for (name, value) in lines(data, b"traceparent") {
        if let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
        {
            map.append(name, value);
        }
    }
    let traceparent = map.get("traceparent").and_then(|value| value.to_str().ok());
    let parsed = traceparent.map(Traceparent::parse);
    if let (Some(value), Some(parsed)) = (traceparent, parsed) {
        assert_eq!(
            parsed.is_ok(),
            grammar_allows(value),
            "{value:?}: {parsed:?}"
        );
        if let Ok(parent) = parsed {
            let written = parent.to_string();
            assert_eq!(Traceparent::parse(&written), Ok(parent));
            assert_eq!(&written[3..52], &value.trim_matches([' ', '\t'])[3..52]);
        }
    }
    // The Extractor interface cannot tell a non-text value from an absent one.
    let comparable = map.values().all(|value| value.to_str().is_ok());
    // Valid B3 (ids or a sampling decision alone) decides before traceparent under the default precedence.
    let b3_decides = B3Propagator::default()
        .extract_from_headers(&Context::new(), &map)
        .get::<B3Context>()
        .is_some();

    for precedence in [Precedence::B3, Precedence::W3c] {
        let propagator = Propagator::new(B3Propagator::new(B3Inject::Both), precedence);
        let cx = propagator.extract_from_headers(&Context::new(), &map);
        let out = inject(&propagator, &cx);
        if comparable {
            let via_extractor =
                propagator.extract_with_context(&Context::new(), &HeaderExtractor(&map));
            assert_eq!(inject(&propagator, &via_extractor), out, "Extractor path");
        }
        if let Some(sent) = out.get("traceparent") {
            assert!(
                sent.len() == 55 && sent.starts_with("00-") && grammar_allows(sent),
                "{sent:?}"
            );
            let trace = out["x-b3-traceid"].as_str();
            assert_eq!(&sent[3..35], format!("{trace:0>32}"), "same trace id");
            assert_eq!(&sent[36..52], out["x-b3-spanid"], "same span id");
        } else {
            assert!(
                !out.contains_key("tracestate"),
                "tracestate only with its traceparent"
            );
        }
        if let Some(Ok(parent)) = parsed
            && (!b3_decides || precedence == Precedence::W3c)
        {
            assert_eq!(
                out.get("traceparent"),
                Some(&parent.to_string()),
                "the W3C trace goes on"
            );
        }
    }
}

fn inject(propagator: &Propagator, cx: &Context) -> HashMap<String, String> {
    let mut out = HashMap::new();
    propagator.inject_context(cx, &mut out);
    out
}
