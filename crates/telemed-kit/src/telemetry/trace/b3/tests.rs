//! The B3 case table: each inbound header set, what extraction must find, and what injection must re-emit.

use std::cell::Cell;
use std::collections::HashMap;

use http::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState, Tracer, TracerProvider,
};
use opentelemetry_sdk::trace::SdkTracerProvider;

use super::*;
use crate::telemetry::trace::{B3Sampler, SamplerSettings};

type Headers = &'static [(&'static str, &'static str)];

enum Expect {
    /// No B3 information: the context comes back unchanged.
    Nothing,
    /// Ignored for this reason: the context comes back unchanged.
    Malformed(MalformedB3),
    Valid {
        trace: Option<&'static str>,
        span: Option<&'static str>,
        parent: Option<&'static str>,
        sampling: Sampling,
        /// What multi mode re-emits when no local span was started.
        multi: Headers,
        /// What single mode re-emits.
        single: &'static str,
    },
}

struct Case {
    name: &'static str,
    headers: Headers,
    expect: Expect,
}

const fn invalid(header: &'static str, field: B3Field) -> Expect {
    Expect::Malformed(MalformedB3::Invalid { header, field })
}

const fn zero(header: &'static str, field: B3Field) -> Expect {
    Expect::Malformed(MalformedB3::ZeroId { header, field })
}

const fn missing(header: &'static str, field: B3Field) -> Expect {
    Expect::Malformed(MalformedB3::Missing { header, field })
}

use B3Field::{ParentSpanId as Parent, Sampling as State, SpanId as Span, TraceId as Trace};

#[rustfmt::skip]
const CASES: &[Case] = &[
    // ---- valid, multi ----
    Case {
        name: "multi 128-bit with parent, accept",
        headers: &[
            ("X-B3-TraceId", "80f198ee56343ba864fe8b2a57d3eff7"),
            ("X-B3-ParentSpanId", "05e3ac9a4f6e3b90"),
            ("X-B3-SpanId", "e457b5a2e4d86bd1"),
            ("X-B3-Sampled", "1"),
        ],
        expect: Expect::Valid {
            trace: Some("80f198ee56343ba864fe8b2a57d3eff7"), span: Some("e457b5a2e4d86bd1"),
            parent: Some("05e3ac9a4f6e3b90"), sampling: Sampling::Accept,
            multi: &[
                ("x-b3-traceid", "80f198ee56343ba864fe8b2a57d3eff7"),
                ("x-b3-spanid", "e457b5a2e4d86bd1"),
                ("x-b3-parentspanid", "05e3ac9a4f6e3b90"),
                ("x-b3-sampled", "1"),
            ],
            single: "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90",
        },
    },
    Case {
        name: "multi 64-bit root, deny",
        headers: &[("x-b3-traceid", "463ac35c9f6413ad"), ("x-b3-spanid", "a2fb4a1d1a96d312"), ("x-b3-sampled", "0")],
        expect: Expect::Valid {
            trace: Some("463ac35c9f6413ad"), span: Some("a2fb4a1d1a96d312"), parent: None, sampling: Sampling::Deny,
            multi: &[("x-b3-traceid", "463ac35c9f6413ad"), ("x-b3-spanid", "a2fb4a1d1a96d312"), ("x-b3-sampled", "0")],
            single: "463ac35c9f6413ad-a2fb4a1d1a96d312-0",
        },
    },
    Case {
        name: "multi defer: no sampled header goes out",
        headers: &[("x-b3-traceid", "463ac35c9f6413ad"), ("x-b3-spanid", "a2fb4a1d1a96d312")],
        expect: Expect::Valid {
            trace: Some("463ac35c9f6413ad"), span: Some("a2fb4a1d1a96d312"), parent: None, sampling: Sampling::Defer,
            multi: &[("x-b3-traceid", "463ac35c9f6413ad"), ("x-b3-spanid", "a2fb4a1d1a96d312")],
            single: "463ac35c9f6413ad-a2fb4a1d1a96d312",
        },
    },
    Case {
        name: "multi defer with parent: single cannot place the parent without a state",
        headers: &[
            ("x-b3-traceid", "80f198ee56343ba864fe8b2a57d3eff7"),
            ("x-b3-spanid", "e457b5a2e4d86bd1"),
            ("x-b3-parentspanid", "05e3ac9a4f6e3b90"),
        ],
        expect: Expect::Valid {
            trace: Some("80f198ee56343ba864fe8b2a57d3eff7"), span: Some("e457b5a2e4d86bd1"),
            parent: Some("05e3ac9a4f6e3b90"), sampling: Sampling::Defer,
            multi: &[
                ("x-b3-traceid", "80f198ee56343ba864fe8b2a57d3eff7"),
                ("x-b3-spanid", "e457b5a2e4d86bd1"),
                ("x-b3-parentspanid", "05e3ac9a4f6e3b90"),
            ],
            single: "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1",
        },
    },
    Case {
        name: "multi debug: flags 1, sampled never sent with it",
        headers: &[("x-b3-traceid", "463ac35c9f6413ad"), ("x-b3-spanid", "a2fb4a1d1a96d312"), ("x-b3-flags", "1")],
        expect: Expect::Valid {
            trace: Some("463ac35c9f6413ad"), span: Some("a2fb4a1d1a96d312"), parent: None, sampling: Sampling::Debug,
            multi: &[("x-b3-traceid", "463ac35c9f6413ad"), ("x-b3-spanid", "a2fb4a1d1a96d312"), ("x-b3-flags", "1")],
            single: "463ac35c9f6413ad-a2fb4a1d1a96d312-d",
        },
    },
    Case {
        name: "multi debug wins over sampled 0",
        headers: &[
            ("x-b3-traceid", "463ac35c9f6413ad"), ("x-b3-spanid", "a2fb4a1d1a96d312"),
            ("x-b3-sampled", "0"), ("x-b3-flags", "1"),
        ],
        expect: Expect::Valid {
            trace: Some("463ac35c9f6413ad"), span: Some("a2fb4a1d1a96d312"), parent: None, sampling: Sampling::Debug,
            multi: &[("x-b3-traceid", "463ac35c9f6413ad"), ("x-b3-spanid", "a2fb4a1d1a96d312"), ("x-b3-flags", "1")],
            single: "463ac35c9f6413ad-a2fb4a1d1a96d312-d",
        },
    },
    Case {
        name: "multi flags other than 1 are ignored",
        headers: &[
            ("x-b3-traceid", "463ac35c9f6413ad"), ("x-b3-spanid", "a2fb4a1d1a96d312"),
            ("x-b3-sampled", "1"), ("x-b3-flags", "0"),
        ],
        expect: Expect::Valid {
            trace: Some("463ac35c9f6413ad"), span: Some("a2fb4a1d1a96d312"), parent: None, sampling: Sampling::Accept,
            multi: &[("x-b3-traceid", "463ac35c9f6413ad"), ("x-b3-spanid", "a2fb4a1d1a96d312"), ("x-b3-sampled", "1")],
            single: "463ac35c9f6413ad-a2fb4a1d1a96d312-1",
        },
    },
    Case {
        name: "multi legacy sampled true is accept, re-emitted as 1",
        headers: &[("x-b3-traceid", "463ac35c9f6413ad"), ("x-b3-spanid", "a2fb4a1d1a96d312"), ("x-b3-sampled", "true")],
        expect: Expect::Valid {
            trace: Some("463ac35c9f6413ad"), span: Some("a2fb4a1d1a96d312"), parent: None, sampling: Sampling::Accept,
            multi: &[("x-b3-traceid", "463ac35c9f6413ad"), ("x-b3-spanid", "a2fb4a1d1a96d312"), ("x-b3-sampled", "1")],
            single: "463ac35c9f6413ad-a2fb4a1d1a96d312-1",
        },
    },
    Case {
        name: "multi legacy sampled false is deny, re-emitted as 0",
        headers: &[("x-b3-traceid", "463ac35c9f6413ad"), ("x-b3-spanid", "a2fb4a1d1a96d312"), ("x-b3-sampled", "false")],
        expect: Expect::Valid {
            trace: Some("463ac35c9f6413ad"), span: Some("a2fb4a1d1a96d312"), parent: None, sampling: Sampling::Deny,
            multi: &[("x-b3-traceid", "463ac35c9f6413ad"), ("x-b3-spanid", "a2fb4a1d1a96d312"), ("x-b3-sampled", "0")],
            single: "463ac35c9f6413ad-a2fb4a1d1a96d312-0",
        },
    },
    Case {
        name: "32-digit trace id with a zero upper half keeps 32 digits",
        headers: &[("x-b3-traceid", "0000000000000000463ac35c9f6413ad"), ("x-b3-spanid", "a2fb4a1d1a96d312"), ("x-b3-sampled", "1")],
        expect: Expect::Valid {
            trace: Some("0000000000000000463ac35c9f6413ad"), span: Some("a2fb4a1d1a96d312"), parent: None,
            sampling: Sampling::Accept,
            multi: &[
                ("x-b3-traceid", "0000000000000000463ac35c9f6413ad"), ("x-b3-spanid", "a2fb4a1d1a96d312"),
                ("x-b3-sampled", "1"),
            ],
            single: "0000000000000000463ac35c9f6413ad-a2fb4a1d1a96d312-1",
        },
    },
    Case {
        name: "32-digit trace id with a zero lower half is valid",
        headers: &[("b3", "463ac35c9f6413ad0000000000000000-a2fb4a1d1a96d312-1")],
        expect: Expect::Valid {
            trace: Some("463ac35c9f6413ad0000000000000000"), span: Some("a2fb4a1d1a96d312"), parent: None,
            sampling: Sampling::Accept,
            multi: &[
                ("x-b3-traceid", "463ac35c9f6413ad0000000000000000"), ("x-b3-spanid", "a2fb4a1d1a96d312"),
                ("x-b3-sampled", "1"),
            ],
            single: "463ac35c9f6413ad0000000000000000-a2fb4a1d1a96d312-1",
        },
    },
    // ---- valid, single ----
    Case {
        name: "single 128-bit full",
        headers: &[("b3", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90")],
        expect: Expect::Valid {
            trace: Some("80f198ee56343ba864fe8b2a57d3eff7"), span: Some("e457b5a2e4d86bd1"),
            parent: Some("05e3ac9a4f6e3b90"), sampling: Sampling::Accept,
            multi: &[
                ("x-b3-traceid", "80f198ee56343ba864fe8b2a57d3eff7"),
                ("x-b3-spanid", "e457b5a2e4d86bd1"),
                ("x-b3-parentspanid", "05e3ac9a4f6e3b90"),
                ("x-b3-sampled", "1"),
            ],
            single: "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90",
        },
    },
    Case {
        name: "single 64-bit debug with parent",
        headers: &[("B3", "463ac35c9f6413ad-a2fb4a1d1a96d312-d-05e3ac9a4f6e3b90")],
        expect: Expect::Valid {
            trace: Some("463ac35c9f6413ad"), span: Some("a2fb4a1d1a96d312"), parent: Some("05e3ac9a4f6e3b90"),
            sampling: Sampling::Debug,
            multi: &[
                ("x-b3-traceid", "463ac35c9f6413ad"), ("x-b3-spanid", "a2fb4a1d1a96d312"),
                ("x-b3-parentspanid", "05e3ac9a4f6e3b90"), ("x-b3-flags", "1"),
            ],
            single: "463ac35c9f6413ad-a2fb4a1d1a96d312-d-05e3ac9a4f6e3b90",
        },
    },
    Case {
        name: "single defer",
        headers: &[("b3", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1")],
        expect: Expect::Valid {
            trace: Some("80f198ee56343ba864fe8b2a57d3eff7"), span: Some("e457b5a2e4d86bd1"), parent: None,
            sampling: Sampling::Defer,
            multi: &[("x-b3-traceid", "80f198ee56343ba864fe8b2a57d3eff7"), ("x-b3-spanid", "e457b5a2e4d86bd1")],
            single: "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1",
        },
    },
    Case {
        name: "single deny with parent",
        headers: &[("b3", "463ac35c9f6413ad-a2fb4a1d1a96d312-0-05e3ac9a4f6e3b90")],
        expect: Expect::Valid {
            trace: Some("463ac35c9f6413ad"), span: Some("a2fb4a1d1a96d312"), parent: Some("05e3ac9a4f6e3b90"),
            sampling: Sampling::Deny,
            multi: &[
                ("x-b3-traceid", "463ac35c9f6413ad"), ("x-b3-spanid", "a2fb4a1d1a96d312"),
                ("x-b3-parentspanid", "05e3ac9a4f6e3b90"), ("x-b3-sampled", "0"),
            ],
            single: "463ac35c9f6413ad-a2fb4a1d1a96d312-0-05e3ac9a4f6e3b90",
        },
    },
    // ---- sampling only ----
    Case {
        name: "b3: 0",
        headers: &[("b3", "0")],
        expect: Expect::Valid { trace: None, span: None, parent: None, sampling: Sampling::Deny,
            multi: &[("x-b3-sampled", "0")], single: "0" },
    },
    Case {
        name: "b3: 1",
        headers: &[("b3", "1")],
        expect: Expect::Valid { trace: None, span: None, parent: None, sampling: Sampling::Accept,
            multi: &[("x-b3-sampled", "1")], single: "1" },
    },
    Case {
        name: "b3: d",
        headers: &[("b3", "d")],
        expect: Expect::Valid { trace: None, span: None, parent: None, sampling: Sampling::Debug,
            multi: &[("x-b3-flags", "1")], single: "d" },
    },
    Case {
        name: "X-B3-Sampled: 0 alone",
        headers: &[("X-B3-Sampled", "0")],
        expect: Expect::Valid { trace: None, span: None, parent: None, sampling: Sampling::Deny,
            multi: &[("x-b3-sampled", "0")], single: "0" },
    },
    Case {
        name: "X-B3-Sampled: 1 alone",
        headers: &[("x-b3-sampled", "1")],
        expect: Expect::Valid { trace: None, span: None, parent: None, sampling: Sampling::Accept,
            multi: &[("x-b3-sampled", "1")], single: "1" },
    },
    Case {
        name: "X-B3-Flags: 1 alone",
        headers: &[("X-B3-Flags", "1")],
        expect: Expect::Valid { trace: None, span: None, parent: None, sampling: Sampling::Debug,
            multi: &[("x-b3-flags", "1")], single: "d" },
    },
    Case {
        name: "X-B3-Flags: 1 with X-B3-Sampled: 1 alone",
        headers: &[("x-b3-flags", "1"), ("x-b3-sampled", "1")],
        expect: Expect::Valid { trace: None, span: None, parent: None, sampling: Sampling::Debug,
            multi: &[("x-b3-flags", "1")], single: "d" },
    },
    Case {
        name: "X-B3-Flags: 0 alone says nothing",
        headers: &[("x-b3-flags", "0")],
        expect: Expect::Nothing,
    },
    Case { name: "no headers", headers: &[], expect: Expect::Nothing },
    Case { name: "unrelated headers", headers: &[("traceparent", "00-80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-01")],
        expect: Expect::Nothing },
    // ---- both formats, repeats ----
    Case {
        name: "both formats: b3 wins",
        headers: &[
            ("b3", "463ac35c9f6413ad-a2fb4a1d1a96d312-1"),
            ("x-b3-traceid", "80f198ee56343ba864fe8b2a57d3eff7"),
            ("x-b3-spanid", "e457b5a2e4d86bd1"),
            ("x-b3-sampled", "0"),
        ],
        expect: Expect::Valid {
            trace: Some("463ac35c9f6413ad"), span: Some("a2fb4a1d1a96d312"), parent: None, sampling: Sampling::Accept,
            multi: &[("x-b3-traceid", "463ac35c9f6413ad"), ("x-b3-spanid", "a2fb4a1d1a96d312"), ("x-b3-sampled", "1")],
            single: "463ac35c9f6413ad-a2fb4a1d1a96d312-1",
        },
    },
    Case {
        name: "both formats: a sampling-only b3 wins over multi ids",
        headers: &[("b3", "0"), ("x-b3-traceid", "463ac35c9f6413ad"), ("x-b3-spanid", "a2fb4a1d1a96d312"), ("x-b3-sampled", "1")],
        expect: Expect::Valid { trace: None, span: None, parent: None, sampling: Sampling::Deny,
            multi: &[("x-b3-sampled", "0")], single: "0" },
    },
    Case {
        name: "both formats: a malformed b3 falls back to valid multi headers (Brave)",
        headers: &[("b3", "463AC35C9F6413AD-a2fb4a1d1a96d312-1"), ("x-b3-traceid", "463ac35c9f6413ad"), ("x-b3-spanid", "a2fb4a1d1a96d312")],
        expect: Expect::Valid {
            trace: Some("463ac35c9f6413ad"), span: Some("a2fb4a1d1a96d312"), parent: None, sampling: Sampling::Defer,
            multi: &[("x-b3-traceid", "463ac35c9f6413ad"), ("x-b3-spanid", "a2fb4a1d1a96d312")],
            single: "463ac35c9f6413ad-a2fb4a1d1a96d312",
        },
    },
    Case {
        name: "both formats: an empty b3 falls back to valid multi headers",
        headers: &[("b3", ""), ("x-b3-traceid", "80f198ee56343ba864fe8b2a57d3eff7"), ("x-b3-spanid", "e457b5a2e4d86bd1"), ("x-b3-sampled", "0")],
        expect: Expect::Valid {
            trace: Some("80f198ee56343ba864fe8b2a57d3eff7"), span: Some("e457b5a2e4d86bd1"), parent: None, sampling: Sampling::Deny,
            multi: &[("x-b3-traceid", "80f198ee56343ba864fe8b2a57d3eff7"), ("x-b3-spanid", "e457b5a2e4d86bd1"), ("x-b3-sampled", "0")],
            single: "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-0",
        },
    },
    Case {
        name: "both formats malformed: ignored, for the reason b3 was",
        headers: &[("b3", "463AC35C9F6413AD-a2fb4a1d1a96d312-1"), ("x-b3-traceid", "463ac35c9f6413ad")],
        expect: invalid(B3, Trace),
    },
    Case {
        name: "a malformed b3 with sampling-only multi headers: the multi decision",
        headers: &[("b3", "not-b3"), ("x-b3-sampled", "0")],
        expect: Expect::Valid {
            trace: None, span: None, parent: None, sampling: Sampling::Deny,
            multi: &[("x-b3-sampled", "0")],
            single: "0",
        },
    },
    Case {
        name: "repeated b3: the first wins",
        headers: &[("b3", "463ac35c9f6413ad-a2fb4a1d1a96d312-0"), ("b3", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1")],
        expect: Expect::Valid {
            trace: Some("463ac35c9f6413ad"), span: Some("a2fb4a1d1a96d312"), parent: None, sampling: Sampling::Deny,
            multi: &[("x-b3-traceid", "463ac35c9f6413ad"), ("x-b3-spanid", "a2fb4a1d1a96d312"), ("x-b3-sampled", "0")],
            single: "463ac35c9f6413ad-a2fb4a1d1a96d312-0",
        },
    },
    Case {
        name: "repeated multi headers: the first of each wins, later garbage is not read",
        headers: &[
            ("x-b3-traceid", "463ac35c9f6413ad"), ("x-b3-traceid", "NOT-HEX"),
            ("x-b3-spanid", "a2fb4a1d1a96d312"), ("x-b3-spanid", "e457b5a2e4d86bd1"),
            ("x-b3-sampled", "1"), ("x-b3-sampled", "0"),
        ],
        expect: Expect::Valid {
            trace: Some("463ac35c9f6413ad"), span: Some("a2fb4a1d1a96d312"), parent: None, sampling: Sampling::Accept,
            multi: &[("x-b3-traceid", "463ac35c9f6413ad"), ("x-b3-spanid", "a2fb4a1d1a96d312"), ("x-b3-sampled", "1")],
            single: "463ac35c9f6413ad-a2fb4a1d1a96d312-1",
        },
    },
    Case {
        name: "repeated b3: a malformed first value is not rescued by the second",
        headers: &[("b3", "463ac35c9f6413ad-a2fb4a1d1a96d312-x"), ("b3", "463ac35c9f6413ad-a2fb4a1d1a96d312-1")],
        expect: invalid(B3, State),
    },
    // ---- malformed, single ----
    Case { name: "b3 upper-case trace id", headers: &[("b3", "463AC35C9F6413AD-a2fb4a1d1a96d312-1")], expect: invalid(B3, Trace) },
    Case { name: "b3 upper-case span id", headers: &[("b3", "463ac35c9f6413ad-A2FB4A1D1A96D312-1")], expect: invalid(B3, Span) },
    Case { name: "b3 upper-case parent id", headers: &[("b3", "463ac35c9f6413ad-a2fb4a1d1a96d312-1-05E3AC9A4F6E3B90")], expect: invalid(B3, Parent) },
    Case { name: "b3 non-hex trace id", headers: &[("b3", "463ac35c9f6413ag-a2fb4a1d1a96d312-1")], expect: invalid(B3, Trace) },
    Case { name: "b3 signed trace id", headers: &[("b3", "+63ac35c9f6413ad-a2fb4a1d1a96d312-1")], expect: invalid(B3, Trace) },
    Case { name: "b3 15-digit trace id", headers: &[("b3", "63ac35c9f6413ad-a2fb4a1d1a96d312-1")], expect: invalid(B3, Trace) },
    Case { name: "b3 17-digit trace id", headers: &[("b3", "0463ac35c9f6413ad-a2fb4a1d1a96d312-1")], expect: invalid(B3, Trace) },
    Case { name: "b3 24-digit trace id", headers: &[("b3", "463ac35c9f6413ad463ac35c-a2fb4a1d1a96d312-1")], expect: invalid(B3, Trace) },
    Case { name: "b3 31-digit trace id", headers: &[("b3", "0f198ee56343ba864fe8b2a57d3eff7-a2fb4a1d1a96d312-1")], expect: invalid(B3, Trace) },
    Case { name: "b3 33-digit trace id", headers: &[("b3", "080f198ee56343ba864fe8b2a57d3eff7-a2fb4a1d1a96d312-1")], expect: invalid(B3, Trace) },
    Case { name: "b3 15-digit span id", headers: &[("b3", "463ac35c9f6413ad-2fb4a1d1a96d312-1")], expect: invalid(B3, Span) },
    Case { name: "b3 32-digit span id", headers: &[("b3", "463ac35c9f6413ad-80f198ee56343ba864fe8b2a57d3eff7-1")], expect: invalid(B3, Span) },
    Case { name: "b3 17-digit parent id", headers: &[("b3", "463ac35c9f6413ad-a2fb4a1d1a96d312-1-005e3ac9a4f6e3b90")], expect: invalid(B3, Parent) },
    Case { name: "b3 all-zero 64-bit trace id", headers: &[("b3", "0000000000000000-a2fb4a1d1a96d312-1")], expect: zero(B3, Trace) },
    Case { name: "b3 all-zero 128-bit trace id", headers: &[("b3", "00000000000000000000000000000000-a2fb4a1d1a96d312-1")], expect: zero(B3, Trace) },
    Case { name: "b3 all-zero span id", headers: &[("b3", "463ac35c9f6413ad-0000000000000000-1")], expect: zero(B3, Span) },
    Case { name: "b3 all-zero parent id", headers: &[("b3", "463ac35c9f6413ad-a2fb4a1d1a96d312-1-0000000000000000")], expect: zero(B3, Parent) },
    Case { name: "b3 unknown state 2", headers: &[("b3", "463ac35c9f6413ad-a2fb4a1d1a96d312-2")], expect: invalid(B3, State) },
    Case { name: "b3 state true", headers: &[("b3", "463ac35c9f6413ad-a2fb4a1d1a96d312-true")], expect: invalid(B3, State) },
    Case { name: "b3 upper-case D", headers: &[("b3", "463ac35c9f6413ad-a2fb4a1d1a96d312-D")], expect: invalid(B3, State) },
    Case { name: "b3 two-character state", headers: &[("b3", "463ac35c9f6413ad-a2fb4a1d1a96d312-11")], expect: invalid(B3, State) },
    Case { name: "b3 parent without a state", headers: &[("b3", "463ac35c9f6413ad-a2fb4a1d1a96d312-05e3ac9a4f6e3b90")], expect: invalid(B3, State) },
    Case { name: "b3 unknown lone state", headers: &[("b3", "2")], expect: invalid(B3, State) },
    Case { name: "b3 lone upper-case D", headers: &[("b3", "D")], expect: invalid(B3, State) },
    Case { name: "b3 lone state with legacy debug suffix", headers: &[("b3", "1-1")], expect: invalid(B3, Trace) },
    Case { name: "b3 lone state with stray separator", headers: &[("b3", "0-")], expect: invalid(B3, Trace) },
    Case { name: "b3 lone separator", headers: &[("b3", "-")], expect: invalid(B3, State) },
    Case { name: "b3 trace id only", headers: &[("b3", "463ac35c9f6413ad")], expect: missing(B3, Span) },
    Case { name: "b3 trailing separator after span", headers: &[("b3", "463ac35c9f6413ad-a2fb4a1d1a96d312-")], expect: invalid(B3, State) },
    Case { name: "b3 trailing separator after state", headers: &[("b3", "463ac35c9f6413ad-a2fb4a1d1a96d312-1-")], expect: invalid(B3, Parent) },
    Case { name: "b3 trailing separator after parent", headers: &[("b3", "463ac35c9f6413ad-a2fb4a1d1a96d312-1-05e3ac9a4f6e3b90-")], expect: Expect::Malformed(MalformedB3::TooManyFields) },
    Case { name: "b3 leading separator", headers: &[("b3", "-463ac35c9f6413ad-a2fb4a1d1a96d312-1")], expect: invalid(B3, Trace) },
    Case { name: "b3 doubled separator", headers: &[("b3", "463ac35c9f6413ad--a2fb4a1d1a96d312-1")], expect: invalid(B3, Span) },
    Case { name: "b3 empty state between separators", headers: &[("b3", "463ac35c9f6413ad-a2fb4a1d1a96d312--05e3ac9a4f6e3b90")], expect: invalid(B3, State) },
    Case { name: "b3 legacy trailing debug field", headers: &[("b3", "463ac35c9f6413ad-a2fb4a1d1a96d312-1-05e3ac9a4f6e3b90-1")], expect: Expect::Malformed(MalformedB3::TooManyFields) },
    Case { name: "b3 trace with trailing separator only", headers: &[("b3", "463ac35c9f6413ad-")], expect: invalid(B3, Span) },
    Case { name: "b3 surrounding space", headers: &[("b3", "463ac35c9f6413ad-a2fb4a1d1a96d312-1 ")], expect: invalid(B3, State) },
    Case { name: "b3 other separator", headers: &[("b3", "463ac35c9f6413ad_a2fb4a1d1a96d312_1")], expect: invalid(B3, Trace) },
    // ---- malformed, multi ----
    Case { name: "multi trace id without span id", headers: &[("x-b3-traceid", "463ac35c9f6413ad"), ("x-b3-sampled", "1")], expect: missing(X_B3_SPAN_ID, Span) },
    Case { name: "multi span id without trace id", headers: &[("x-b3-spanid", "a2fb4a1d1a96d312")], expect: missing(X_B3_TRACE_ID, Trace) },
    Case { name: "multi parent without span id or trace id", headers: &[("x-b3-parentspanid", "05e3ac9a4f6e3b90"), ("x-b3-sampled", "1")], expect: missing(X_B3_TRACE_ID, Trace) },
    Case { name: "multi parent and trace id without span id", headers: &[("x-b3-traceid", "463ac35c9f6413ad"), ("x-b3-parentspanid", "05e3ac9a4f6e3b90")], expect: missing(X_B3_SPAN_ID, Span) },
    Case { name: "multi upper-case trace id", headers: &[("x-b3-traceid", "463AC35C9F6413AD"), ("x-b3-spanid", "a2fb4a1d1a96d312")], expect: invalid(X_B3_TRACE_ID, Trace) },
    Case { name: "multi upper-case span id", headers: &[("x-b3-traceid", "463ac35c9f6413ad"), ("x-b3-spanid", "A2FB4A1D1A96D312")], expect: invalid(X_B3_SPAN_ID, Span) },
    Case { name: "multi 20-digit trace id", headers: &[("x-b3-traceid", "463ac35c9f6413ad0000"), ("x-b3-spanid", "a2fb4a1d1a96d312")], expect: invalid(X_B3_TRACE_ID, Trace) },
    Case { name: "multi short span id", headers: &[("x-b3-traceid", "463ac35c9f6413ad"), ("x-b3-spanid", "a2fb")], expect: invalid(X_B3_SPAN_ID, Span) },
    Case { name: "multi short parent id", headers: &[("x-b3-traceid", "463ac35c9f6413ad"), ("x-b3-spanid", "a2fb4a1d1a96d312"), ("x-b3-parentspanid", "05e3")], expect: invalid(X_B3_PARENT_SPAN_ID, Parent) },
    Case { name: "multi all-zero trace id", headers: &[("x-b3-traceid", "00000000000000000000000000000000"), ("x-b3-spanid", "a2fb4a1d1a96d312")], expect: zero(X_B3_TRACE_ID, Trace) },
    Case { name: "multi all-zero span id", headers: &[("x-b3-traceid", "463ac35c9f6413ad"), ("x-b3-spanid", "0000000000000000")], expect: zero(X_B3_SPAN_ID, Span) },
    Case { name: "multi all-zero parent id", headers: &[("x-b3-traceid", "463ac35c9f6413ad"), ("x-b3-spanid", "a2fb4a1d1a96d312"), ("x-b3-parentspanid", "0000000000000000")], expect: zero(X_B3_PARENT_SPAN_ID, Parent) },
    Case { name: "multi empty trace id", headers: &[("x-b3-traceid", ""), ("x-b3-spanid", "a2fb4a1d1a96d312")], expect: invalid(X_B3_TRACE_ID, Trace) },
    Case { name: "multi empty span id", headers: &[("x-b3-traceid", "463ac35c9f6413ad"), ("x-b3-spanid", "")], expect: invalid(X_B3_SPAN_ID, Span) },
    Case { name: "multi empty sampled", headers: &[("x-b3-traceid", "463ac35c9f6413ad"), ("x-b3-spanid", "a2fb4a1d1a96d312"), ("x-b3-sampled", "")], expect: invalid(X_B3_SAMPLED, State) },
    Case { name: "multi sampled 2", headers: &[("x-b3-traceid", "463ac35c9f6413ad"), ("x-b3-spanid", "a2fb4a1d1a96d312"), ("x-b3-sampled", "2")], expect: invalid(X_B3_SAMPLED, State) },
    Case { name: "multi sampled d (debug belongs in flags)", headers: &[("x-b3-traceid", "463ac35c9f6413ad"), ("x-b3-spanid", "a2fb4a1d1a96d312"), ("x-b3-sampled", "d")], expect: invalid(X_B3_SAMPLED, State) },
    Case { name: "multi sampled TRUE", headers: &[("x-b3-traceid", "463ac35c9f6413ad"), ("x-b3-spanid", "a2fb4a1d1a96d312"), ("x-b3-sampled", "TRUE")], expect: invalid(X_B3_SAMPLED, State) },
    Case { name: "multi sampled yes, even with debug", headers: &[("x-b3-traceid", "463ac35c9f6413ad"), ("x-b3-spanid", "a2fb4a1d1a96d312"), ("x-b3-sampled", "yes"), ("x-b3-flags", "1")], expect: invalid(X_B3_SAMPLED, State) },
    Case { name: "multi sampled 2 alone", headers: &[("x-b3-sampled", "2")], expect: invalid(X_B3_SAMPLED, State) },
    Case { name: "multi trace id with separator", headers: &[("x-b3-traceid", "463ac35c-9f6413ad"), ("x-b3-spanid", "a2fb4a1d1a96d312")], expect: invalid(X_B3_TRACE_ID, Trace) },
];

/// An HTTP header map with every pair appended in order, so repeats keep their order.
fn header_map(headers: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    map
}

/// The extractor shape `opentelemetry-http` gives an HTTP header map.
struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

/// A case-sensitive carrier (a message's headers): names exactly as sent, first match wins. Counts `keys()`.
struct Exact {
    pairs: Vec<(String, String)>,
    keys_calls: Cell<usize>,
}

impl Exact {
    fn new(headers: &[(&str, &str)]) -> Self {
        Self {
            pairs: headers
                .iter()
                .map(|(name, value)| (name.to_string(), value.to_string()))
                .collect(),
            keys_calls: Cell::new(0),
        }
    }
}

impl Extractor for Exact {
    fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(name, _)| name == key)
            .map(|(_, value)| value.as_str())
    }

    fn keys(&self) -> Vec<&str> {
        self.keys_calls.set(self.keys_calls.get() + 1);
        self.pairs.iter().map(|(name, _)| name.as_str()).collect()
    }
}

/// A value already in the context, to show extraction hands back the given context when it finds nothing usable.
#[derive(Debug, PartialEq)]
struct Marker;

/// Extracts `headers` through every entry point and checks they agree; returns the context.
fn extract_all(propagator: &B3Propagator, headers: &[(&str, &str)]) -> Context {
    let map = header_map(headers);
    let from_map = propagator.extract_from_headers(&Context::new(), &map);
    let from_extractor = propagator.extract_with_context(&Context::new(), &HeaderExtractor(&map));
    let from_pairs = propagator.extract_from_pairs(&Context::new(), headers.iter().copied());
    let from_exact = propagator.extract_with_context(&Context::new(), &Exact::new(headers));
    let seen = |cx: &Context| {
        (
            cx.get::<B3Context>().copied(),
            cx.span().span_context().clone(),
        )
    };
    assert_eq!(seen(&from_map), seen(&from_extractor), "extractor path");
    assert_eq!(seen(&from_map), seen(&from_pairs), "pairs path");
    assert_eq!(seen(&from_map), seen(&from_exact), "case-sensitive path");
    from_map
}

fn inject(propagator: B3Propagator, cx: &Context) -> HashMap<String, String> {
    let mut out = HashMap::new();
    propagator.inject_context(cx, &mut out);
    out
}

fn owned(headers: &[(&str, &str)]) -> HashMap<String, String> {
    headers
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect()
}

#[test]
fn case_table_extracts_and_round_trips() {
    let propagator = B3Propagator::default();
    for case in CASES {
        let name = case.name;
        let cx = extract_all(&propagator, case.headers);
        let b3 = cx.get::<B3Context>().copied();
        match &case.expect {
            Expect::Nothing | Expect::Malformed(_) => {
                assert_eq!(b3, None, "{name}");
                assert!(!cx.has_active_span(), "{name}: no remote span");
                for mode in [B3Inject::Multi, B3Inject::Single, B3Inject::Both] {
                    assert!(inject(B3Propagator::new(mode), &cx).is_empty(), "{name}");
                }
                // The given context is returned as it was.
                let given = Context::new().with_value(Marker);
                let kept = propagator.extract_from_headers(&given, &header_map(case.headers));
                assert_eq!(kept.get::<Marker>(), Some(&Marker), "{name}");
                assert_eq!(kept.get::<B3Context>(), None, "{name}");
                assert!(!kept.has_active_span(), "{name}");
            }
            Expect::Valid {
                trace,
                span,
                parent,
                sampling,
                multi,
                single,
            } => {
                let b3 = b3.unwrap_or_else(|| panic!("{name}: nothing extracted"));
                assert_eq!(b3.trace_id_text().as_deref(), *trace, "{name}: trace id");
                assert_eq!(
                    b3.span_id().map(|id| format!("{id:016x}")).as_deref(),
                    *span,
                    "{name}: span id"
                );
                assert_eq!(
                    b3.parent_span_id()
                        .map(|id| format!("{id:016x}"))
                        .as_deref(),
                    *parent,
                    "{name}: parent"
                );
                assert_eq!(b3.sampling(), *sampling, "{name}: sampling");
                assert_eq!(
                    trace_id_text(&cx).as_deref(),
                    *trace,
                    "{name}: trace_id_text"
                );

                let remote = cx.span().span_context().clone();
                match trace {
                    Some(trace) => {
                        assert!(
                            remote.is_valid() && remote.is_remote(),
                            "{name}: remote span context"
                        );
                        assert_eq!(
                            remote.trace_id(),
                            TraceId::from_hex(trace).unwrap(),
                            "{name}"
                        );
                        assert_eq!(
                            remote.span_id(),
                            SpanId::from_hex(span.unwrap()).unwrap(),
                            "{name}"
                        );
                        let sampled = matches!(sampling, Sampling::Accept | Sampling::Debug);
                        assert_eq!(remote.is_sampled(), sampled, "{name}: sampled flag");
                    }
                    None => assert!(!remote.is_valid(), "{name}: sampling-only has no span"),
                }

                let out_multi = inject(B3Propagator::new(B3Inject::Multi), &cx);
                assert_eq!(out_multi, owned(multi), "{name}: multi");
                let out_single = inject(B3Propagator::new(B3Inject::Single), &cx);
                assert_eq!(out_single, owned(&[("b3", single)]), "{name}: single");
                let mut both = owned(multi);
                both.insert("b3".to_owned(), single.to_string());
                assert_eq!(
                    inject(B3Propagator::new(B3Inject::Both), &cx),
                    both,
                    "{name}: both"
                );

                // What the multi headers carry reads back as the same context.
                let again = propagator.extract_with_context(&Context::new(), &out_multi);
                assert_eq!(
                    again.get::<B3Context>(),
                    Some(&b3),
                    "{name}: multi round trip"
                );
                assert_eq!(
                    B3Context::parse_single(single).unwrap().to_string(),
                    *single,
                    "{name}"
                );
            }
        }
        if let Expect::Malformed(reason) = &case.expect {
            let get = |wanted: &str| {
                case.headers
                    .iter()
                    .find(|(name, _)| name.eq_ignore_ascii_case(wanted))
                    .map(|(_, value)| *value)
            };
            let parsed = match get(B3) {
                Some(value) => B3Context::parse_single(value).map(Some),
                None => B3Context::parse_multi(MultiHeaders {
                    trace_id: get(X_B3_TRACE_ID),
                    span_id: get(X_B3_SPAN_ID),
                    parent_span_id: get(X_B3_PARENT_SPAN_ID),
                    sampled: get(X_B3_SAMPLED),
                    flags: get(X_B3_FLAGS),
                }),
            };
            assert_eq!(parsed, Err(*reason), "{name}: reason");
        }
    }
}

#[test]
fn a_value_that_is_not_text_is_malformed_not_absent() {
    let mut map = header_map(&[
        ("x-b3-traceid", "463ac35c9f6413ad"),
        ("x-b3-spanid", "a2fb4a1d1a96d312"),
    ]);
    map.insert("b3", HeaderValue::from_bytes(b"\xff\xfe").unwrap());
    // An unreadable b3 is malformed, so the valid multi headers decide.
    let cx = B3Propagator::default().extract_from_headers(&Context::new(), &map);
    assert_eq!(
        cx.get::<B3Context>().and_then(B3Context::span_id),
        Some(SpanId::from(0xa2fb4a1d1a96d312))
    );
    map.remove("x-b3-spanid");
    let cx = B3Propagator::default().extract_from_headers(&Context::new(), &map);
    assert_eq!(cx.get::<B3Context>(), None);
    assert!(!cx.has_active_span());

    let mut map = header_map(&[("x-b3-spanid", "a2fb4a1d1a96d312")]);
    map.insert(
        "x-b3-traceid",
        HeaderValue::from_bytes(b"463ac35c9f6413\xad").unwrap(),
    );
    let cx = B3Propagator::default().extract_from_headers(&Context::new(), &map);
    assert_eq!(cx.get::<B3Context>(), None);
}

#[test]
fn lower_case_names_are_read_without_listing_keys() {
    let carrier = Exact::new(&[
        ("x-b3-traceid", "463ac35c9f6413ad"),
        ("x-b3-spanid", "a2fb4a1d1a96d312"),
    ]);
    let cx = B3Propagator::default().extract_with_context(&Context::new(), &carrier);
    assert!(cx.get::<B3Context>().is_some());
    assert_eq!(carrier.keys_calls.get(), 0);

    let carrier = Exact::new(&[
        ("X-B3-TraceId", "463ac35c9f6413ad"),
        ("X-B3-SpanId", "a2fb4a1d1a96d312"),
    ]);
    let cx = B3Propagator::default().extract_with_context(&Context::new(), &carrier);
    assert_eq!(
        cx.get::<B3Context>()
            .and_then(B3Context::trace_id_text)
            .as_deref(),
        Some("463ac35c9f6413ad")
    );
    assert_eq!(carrier.keys_calls.get(), 1);
}

#[test]
fn a_raw_map_with_any_name_case_is_read_through_pairs() {
    let raw: HashMap<String, String> = owned(&[
        ("X-B3-TRACEID", "463ac35c9f6413ad"),
        ("X-b3-SpanId", "a2fb4a1d1a96d312"),
        ("X-B3-Sampled", "0"),
    ]);
    let cx = B3Propagator::default().extract_from_pairs(
        &Context::new(),
        raw.iter()
            .map(|(name, value)| (name.as_str(), value.as_str())),
    );
    let b3 = cx.get::<B3Context>().unwrap();
    assert_eq!(b3.sampling(), Sampling::Deny);
    assert_eq!(
        b3.span_id(),
        Some(SpanId::from_hex("a2fb4a1d1a96d312").unwrap())
    );
}

fn tracer_provider(ratio: f64) -> SdkTracerProvider {
    SdkTracerProvider::builder()
        .with_sampler(B3Sampler::new(&SamplerSettings { ratio }))
        .build()
}

/// Extracts `headers`, starts a real SDK span under the result, and returns the child's context.
fn local_child(headers: Headers, ratio: f64) -> Context {
    let cx = extract_all(&B3Propagator::default(), headers);
    let span = tracer_provider(ratio)
        .tracer("test")
        .start_with_context("child", &cx);
    cx.with_span(span)
}

fn child_ids(cx: &Context) -> (String, String) {
    let span = cx.span();
    let context = span.span_context();
    (
        format!("{:032x}", context.trace_id()),
        format!("{:016x}", context.span_id()),
    )
}

#[test]
fn a_local_child_continues_the_trace_in_its_original_width() {
    let cx = local_child(
        &[("b3", "463ac35c9f6413ad-a2fb4a1d1a96d312-1-05e3ac9a4f6e3b90")],
        1.0,
    );
    let (trace, span) = child_ids(&cx);
    assert_eq!(trace, "0000000000000000463ac35c9f6413ad", "same trace");
    assert_ne!(span, "a2fb4a1d1a96d312", "a fresh span id");
    assert_eq!(
        inject(B3Propagator::new(B3Inject::Multi), &cx),
        owned(&[
            ("x-b3-traceid", "463ac35c9f6413ad"),
            ("x-b3-spanid", &span),
            ("x-b3-sampled", "1")
        ])
    );
    assert_eq!(
        inject(B3Propagator::new(B3Inject::Single), &cx),
        owned(&[("b3", &format!("463ac35c9f6413ad-{span}-1"))])
    );
    assert_eq!(trace_id_text(&cx).as_deref(), Some("463ac35c9f6413ad"));

    let cx = local_child(
        &[
            ("x-b3-traceid", "80f198ee56343ba864fe8b2a57d3eff7"),
            ("x-b3-spanid", "e457b5a2e4d86bd1"),
        ],
        1.0,
    );
    let (trace, span) = child_ids(&cx);
    assert_eq!(trace, "80f198ee56343ba864fe8b2a57d3eff7");
    assert_eq!(
        inject(B3Propagator::new(B3Inject::Multi), &cx),
        owned(&[
            ("x-b3-traceid", &trace),
            ("x-b3-spanid", &span),
            ("x-b3-sampled", "1")
        ])
    );
}

#[test]
fn a_local_child_carries_its_own_decision_and_keeps_debug() {
    // Debug stays debug, in both encodings.
    let cx = local_child(
        &[
            ("x-b3-traceid", "463ac35c9f6413ad"),
            ("x-b3-spanid", "a2fb4a1d1a96d312"),
            ("x-b3-flags", "1"),
        ],
        0.0,
    );
    let (_, span) = child_ids(&cx);
    assert_eq!(
        inject(B3Propagator::new(B3Inject::Both), &cx),
        owned(&[
            ("x-b3-traceid", "463ac35c9f6413ad"),
            ("x-b3-spanid", &span),
            ("x-b3-flags", "1"),
            ("b3", &format!("463ac35c9f6413ad-{span}-d")),
        ])
    );

    // Defer becomes the local decision: sampled at ratio 1, not at ratio 0.
    let deferred: Headers = &[("b3", "463ac35c9f6413ad-a2fb4a1d1a96d312")];
    let cx = local_child(deferred, 1.0);
    assert_eq!(
        inject(B3Propagator::new(B3Inject::Multi), &cx)["x-b3-sampled"],
        "1"
    );
    let cx = local_child(deferred, 0.0);
    assert_eq!(
        inject(B3Propagator::new(B3Inject::Multi), &cx)["x-b3-sampled"],
        "0"
    );

    // Deny stays deny, with the child's ids (the spec: established ids travel with a deny).
    let cx = local_child(&[("b3", "463ac35c9f6413ad-a2fb4a1d1a96d312-0")], 1.0);
    let (_, span) = child_ids(&cx);
    assert_eq!(
        inject(B3Propagator::new(B3Inject::Single), &cx),
        owned(&[("b3", &format!("463ac35c9f6413ad-{span}-0"))])
    );
}

#[test]
fn sampling_only_without_a_span_is_passed_on_and_with_one_keeps_the_decision() {
    for (inbound, multi, single) in [
        ("0", ("x-b3-sampled", "0"), "0"),
        ("1", ("x-b3-sampled", "1"), "1"),
        ("d", ("x-b3-flags", "1"), "d"),
    ] {
        let cx = extract_all(&B3Propagator::default(), &[("b3", inbound)]);
        assert_eq!(
            inject(B3Propagator::new(B3Inject::Multi), &cx),
            owned(&[multi])
        );
        assert_eq!(
            inject(B3Propagator::new(B3Inject::Single), &cx),
            owned(&[("b3", single)])
        );
        assert_eq!(trace_id_text(&cx), None, "no trace id travels");
    }

    // With a local root span: a new 128-bit trace, the inbound decision kept.
    let cx = local_child(&[("b3", "d")], 0.0);
    let (trace, span) = child_ids(&cx);
    assert_ne!(trace, "00000000000000000000000000000000");
    assert_eq!(
        inject(B3Propagator::new(B3Inject::Single), &cx),
        owned(&[("b3", &format!("{trace}-{span}-d"))])
    );
    assert_eq!(trace_id_text(&cx).as_deref(), Some(trace.as_str()));

    let cx = local_child(&[("x-b3-sampled", "0")], 1.0);
    let (trace, span) = child_ids(&cx);
    assert_eq!(
        inject(B3Propagator::new(B3Inject::Multi), &cx),
        owned(&[
            ("x-b3-traceid", &trace),
            ("x-b3-spanid", &span),
            ("x-b3-sampled", "0")
        ])
    );
}

#[test]
fn a_sampling_only_header_detaches_a_span_already_in_the_context() {
    let old = SpanContext::new(
        TraceId::from_hex("80f198ee56343ba864fe8b2a57d3eff7").unwrap(),
        SpanId::from_hex("e457b5a2e4d86bd1").unwrap(),
        TraceFlags::SAMPLED,
        true,
        TraceState::NONE,
    );
    let cx = Context::new().with_remote_span_context(old);
    let cx = B3Propagator::default().extract_from_pairs(&cx, [("b3", "0")]);
    assert!(!cx.span().span_context().is_valid());
    assert_eq!(
        inject(B3Propagator::default(), &cx),
        owned(&[("x-b3-sampled", "0")])
    );
}

#[test]
fn without_b3_a_local_span_is_written_as_128_bit_and_nothing_is_written_without_a_span() {
    assert!(inject(B3Propagator::new(B3Inject::Both), &Context::new()).is_empty());
    assert_eq!(trace_id_text(&Context::new()), None);

    let span = tracer_provider(1.0)
        .tracer("test")
        .start_with_context("root", &Context::new());
    let cx = Context::new().with_span(span);
    let (trace, span) = child_ids(&cx);
    assert_eq!(
        inject(B3Propagator::new(B3Inject::Both), &cx),
        owned(&[
            ("x-b3-traceid", &trace),
            ("x-b3-spanid", &span),
            ("x-b3-sampled", "1"),
            ("b3", &format!("{trace}-{span}-1")),
        ])
    );
}

#[test]
fn inject_modes_parse_and_fields_list_every_header() {
    assert_eq!("multi".parse(), Ok(B3Inject::Multi));
    assert_eq!("Single".parse(), Ok(B3Inject::Single));
    assert_eq!("BOTH".parse(), Ok(B3Inject::Both));
    assert_eq!("b3".parse::<B3Inject>(), Err(ParseB3InjectError));
    assert_eq!("".parse::<B3Inject>(), Err(ParseB3InjectError));
    assert_eq!(B3Inject::default(), B3Inject::Multi);
    assert_eq!(B3Inject::Both.to_string().parse(), Ok(B3Inject::Both));

    for mode in [B3Inject::Multi, B3Inject::Single, B3Inject::Both] {
        let propagator = B3Propagator::new(mode);
        let fields: Vec<&str> = propagator.fields().collect();
        assert_eq!(
            fields,
            [
                "b3",
                "x-b3-traceid",
                "x-b3-spanid",
                "x-b3-parentspanid",
                "x-b3-sampled",
                "x-b3-flags"
            ]
        );
    }
}

#[test]
fn trace_id_text_is_exactly_the_wire_text() {
    let text = TraceIdText::new(TraceId::from_hex("463ac35c9f6413ad").unwrap(), true);
    assert_eq!(text, "463ac35c9f6413ad");
    assert_eq!(text.len(), 16);
    // A 64-bit rendering is impossible when the upper half is used.
    let text = TraceIdText::new(
        TraceId::from_hex("80f198ee56343ba864fe8b2a57d3eff7").unwrap(),
        true,
    );
    assert_eq!(text, "80f198ee56343ba864fe8b2a57d3eff7");
    let text = TraceIdText::new(TraceId::from_hex("463ac35c9f6413ad").unwrap(), false);
    assert_eq!(text, "0000000000000000463ac35c9f6413ad");
    assert_eq!(
        format!("{text}|{text:?}"),
        "0000000000000000463ac35c9f6413ad|\"0000000000000000463ac35c9f6413ad\""
    );
}

#[test]
fn constructors_refuse_what_b3_cannot_carry() {
    let trace = TraceId::from_hex("463ac35c9f6413ad").unwrap();
    let span = SpanId::from_hex("a2fb4a1d1a96d312").unwrap();
    assert_eq!(B3Context::sampling_only(Sampling::Defer), None);
    assert_eq!(
        B3Context::new(TraceId::INVALID, span, Sampling::Accept),
        None
    );
    assert_eq!(
        B3Context::new(trace, SpanId::INVALID, Sampling::Accept),
        None
    );
    let b3 = B3Context::new(trace, span, Sampling::Accept).unwrap();
    assert!(!b3.is_trace_id_64(), "new() is 128-bit");
    assert_eq!(
        b3.to_string(),
        "0000000000000000463ac35c9f6413ad-a2fb4a1d1a96d312-1"
    );
}
