"""B3 inbound cases driven through the real service: what the upstream receives for each.

Each row is the inbound headers and the context the B3 specification says they carry (b3.md): trace id, span
id, parent span id and sampling state, or None when the headers are malformed (ignored: a new trace, and the
request still answered). Without export the service must pass that context on unchanged in the configured
encoding; with export it must keep the trace id (and its width) and the decision, with its own span id.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from telemetry_support import HEX_ID, read_setting

T32 = "463ac35c9f6413ad48485a3953bb6124"
T16 = "463ac35c9f6413ad"
S = "a2fb4a1d1a96d312"
P = "0020000000000001"
OTHER_T = "80f198ee56343ba864fe8b2a57d3eff7"
OTHER_S = "e457b5a2e4d86bd1"


@dataclass(frozen=True)
class B3:
    """A B3 context: ids absent for a sampling-only decision. Sampling is defer, deny, accept or debug."""

    sampling: str
    trace: str | None = None
    span: str | None = None
    parent: str | None = None


def multi(ctx: B3) -> dict[str, str]:
    headers = {}
    if ctx.trace:
        headers |= {"x-b3-traceid": ctx.trace, "x-b3-spanid": ctx.span}
    if ctx.parent:
        headers["x-b3-parentspanid"] = ctx.parent
    # Debug implies accept, so X-B3-Sampled is not sent with X-B3-Flags.
    headers |= {"defer": {}, "deny": {"x-b3-sampled": "0"}, "accept": {"x-b3-sampled": "1"},
                "debug": {"x-b3-flags": "1"}}[ctx.sampling]
    return headers


def single(ctx: B3) -> dict[str, str]:
    state = {"defer": None, "deny": "0", "accept": "1", "debug": "d"}[ctx.sampling]
    if not ctx.trace:
        return {"b3": state} if state else {}
    value = f"{ctx.trace}-{ctx.span}"
    # The parent id sits after the state field, so a deferred context has no place for it.
    if state:
        value += f"-{state}" + (f"-{ctx.parent}" if ctx.parent else "")
    return {"b3": value}


def encoded(ctx: B3 | None, mode: str) -> dict[str, str]:
    if ctx is None:
        return {}
    return {"multi": multi(ctx), "single": single(ctx), "both": multi(ctx) | single(ctx)}[mode]


def row(name, headers, expected):
    return pytest.param(headers, expected, id=name)


VALID = [
    row("multi-128-accept", [("X-B3-TraceId", T32), ("X-B3-SpanId", S), ("X-B3-Sampled", "1")],
        B3("accept", T32, S)),
    row("multi-64-deny-parent", [("X-B3-TraceId", T16), ("X-B3-SpanId", S), ("X-B3-ParentSpanId", P),
                                 ("X-B3-Sampled", "0")], B3("deny", T16, S, P)),
    row("multi-128-defer-parent", [("X-B3-TraceId", T32), ("X-B3-SpanId", S), ("X-B3-ParentSpanId", P)],
        B3("defer", T32, S, P)),
    row("multi-64-defer", [("X-B3-TraceId", T16), ("X-B3-SpanId", S)], B3("defer", T16, S)),
    row("multi-debug", [("X-B3-TraceId", T32), ("X-B3-SpanId", S), ("X-B3-Flags", "1")], B3("debug", T32, S)),
    row("multi-debug-wins-over-sampled", [("X-B3-TraceId", T16), ("X-B3-SpanId", S), ("X-B3-Sampled", "0"),
                                          ("X-B3-Flags", "1")], B3("debug", T16, S)),
    row("multi-legacy-true", [("X-B3-TraceId", T32), ("X-B3-SpanId", S), ("X-B3-Sampled", "true")],
        B3("accept", T32, S)),
    row("multi-legacy-false", [("X-B3-TraceId", T32), ("X-B3-SpanId", S), ("X-B3-Sampled", "false")],
        B3("deny", T32, S)),
    row("multi-other-flags-ignored", [("X-B3-TraceId", T32), ("X-B3-SpanId", S), ("X-B3-Sampled", "1"),
                                      ("X-B3-Flags", "0")], B3("accept", T32, S)),
    row("multi-names-any-case", [("X-B3-TRACEID", T32), ("x-b3-spanid", S), ("X-b3-Sampled", "1")],
        B3("accept", T32, S)),
    row("single-128-accept-parent", [("b3", f"{T32}-{S}-1-{P}")], B3("accept", T32, S, P)),
    row("single-64-debug", [("b3", f"{T16}-{S}-d")], B3("debug", T16, S)),
    row("single-64-debug-parent", [("B3", f"{T16}-{S}-d-{P}")], B3("debug", T16, S, P)),
    row("single-128-defer", [("b3", f"{T32}-{S}")], B3("defer", T32, S)),
    row("single-64-deny", [("b3", f"{T16}-{S}-0")], B3("deny", T16, S)),
    row("sampling-only-b3-0", [("b3", "0")], B3("deny")),
    row("sampling-only-b3-1", [("b3", "1")], B3("accept")),
    row("sampling-only-b3-d", [("b3", "d")], B3("debug")),
    row("sampling-only-sampled-0", [("X-B3-Sampled", "0")], B3("deny")),
    row("sampling-only-sampled-1", [("X-B3-Sampled", "1")], B3("accept")),
    row("sampling-only-flags-1", [("X-B3-Flags", "1")], B3("debug")),
    row("both-formats-single-wins", [("X-B3-TraceId", OTHER_T), ("X-B3-SpanId", OTHER_S), ("X-B3-Sampled", "1"),
                                     ("b3", f"{T32}-{S}-0")], B3("deny", T32, S)),
    row("both-formats-sampling-only-single-decides-alone", [("b3", "0"), ("X-B3-TraceId", OTHER_T),
                                                             ("X-B3-SpanId", OTHER_S)], B3("deny")),
    row("repeated-b3-first-wins", [("b3", f"{T32}-{S}-1"), ("b3", f"{OTHER_T}-{OTHER_S}-0")],
        B3("accept", T32, S)),
    row("repeated-trace-id-first-wins", [("X-B3-TraceId", T16), ("X-B3-TraceId", OTHER_T), ("X-B3-SpanId", S)],
        B3("defer", T16, S)),
    row("repeated-sampled-first-wins", [("X-B3-TraceId", T32), ("X-B3-SpanId", S), ("X-B3-Sampled", "1"),
                                        ("X-B3-Sampled", "0")], B3("accept", T32, S)),
]

MALFORMED = [
    row("upper-case-trace-id", [("X-B3-TraceId", T32.upper()), ("X-B3-SpanId", S)], None),
    row("upper-case-span-id-single", [("b3", f"{T32}-{S.upper()}-1")], None),
    row("trace-id-15-digits", [("X-B3-TraceId", T16[:-1]), ("X-B3-SpanId", S)], None),
    row("trace-id-17-digits", [("X-B3-TraceId", T16 + "a"), ("X-B3-SpanId", S)], None),
    row("trace-id-31-digits", [("b3", f"{T32[:-1]}-{S}")], None),
    row("trace-id-33-digits", [("b3", f"{T32}a-{S}")], None),
    row("span-id-15-digits", [("X-B3-TraceId", T32), ("X-B3-SpanId", S[:-1])], None),
    row("span-id-32-digits", [("b3", f"{T32}-{T32}-1")], None),
    row("zero-trace-id-128", [("X-B3-TraceId", "0" * 32), ("X-B3-SpanId", S), ("X-B3-Sampled", "1")], None),
    row("zero-trace-id-64", [("b3", f"{'0' * 16}-{S}-1")], None),
    row("zero-span-id", [("X-B3-TraceId", T32), ("X-B3-SpanId", "0" * 16)], None),
    row("zero-parent-id", [("b3", f"{T32}-{S}-1-{'0' * 16}")], None),
    row("not-hex", [("X-B3-TraceId", "463ac35c9f6413az"), ("X-B3-SpanId", S)], None),
    row("sampled-2", [("X-B3-TraceId", T32), ("X-B3-SpanId", S), ("X-B3-Sampled", "2")], None),
    row("sampled-empty", [("X-B3-TraceId", T32), ("X-B3-SpanId", S), ("X-B3-Sampled", "")], None),
    row("sampling-only-sampled-yes", [("X-B3-Sampled", "yes")], None),
    row("single-state-2", [("b3", f"{T32}-{S}-2")], None),
    row("single-state-upper-D", [("b3", f"{T32}-{S}-D")], None),
    row("single-state-true", [("b3", f"{T32}-{S}-true")], None),
    row("single-sampling-only-2", [("b3", "2")], None),
    row("single-trailing-dash", [("b3", f"{T32}-{S}-1-")], None),
    row("single-double-dash", [("b3", f"{T32}--{S}")], None),
    row("single-leading-dash", [("b3", f"-{T32}-{S}")], None),
    row("single-too-many-fields", [("b3", f"{T32}-{S}-1-{P}-{P}")], None),
    row("single-parent-without-state", [("b3", f"{T32}-{S}-{P}")], None),
    row("single-trace-only", [("b3", T32)], None),
    row("single-empty", [("b3", "")], None),
    row("single-not-ascii", [("b3", f"{T32}-{S}-1\xe9")], None),
    row("trace-without-span", [("X-B3-TraceId", T32), ("X-B3-Sampled", "1")], None),
    row("span-without-trace", [("X-B3-SpanId", S), ("X-B3-Sampled", "1")], None),
    row("parent-without-ids", [("X-B3-ParentSpanId", P)], None),
    # A broken b3 beside broken multi headers: nothing to continue.
    row("malformed-single-beside-malformed-multi", [("b3", f"{T32}-{S}-x"), ("X-B3-TraceId", OTHER_T),
                                                    ("X-B3-Sampled", "1")], None),
]

# A broken b3 beside valid multi headers of the same request: the multi headers decide, as Brave does
# (a sender writing both encodings may get one wrong; the other still carries its trace).
VALID += [
    row("malformed-single-beside-valid-multi", [("b3", f"{T32}-{S}-x"), ("X-B3-TraceId", OTHER_T),
                                                ("X-B3-SpanId", OTHER_S), ("X-B3-Sampled", "1")],
        B3("accept", OTHER_T, OTHER_S)),
]


@pytest.mark.parametrize("mode", ["multi", "single", "both"])
@pytest.mark.parametrize("headers, expected", VALID + MALFORMED)
def test_forwarded_unchanged_without_export(services, upstream, mode, headers, expected):
    service = services.get(B3_INJECT=mode)
    expect_id = expected.trace if expected else None
    exchange = read_setting(service, upstream, headers, expect_id=expect_id)
    assert exchange.upstream.b3() == encoded(expected, mode)


@pytest.mark.parametrize("headers, expected", VALID + MALFORMED)
def test_exporting_keeps_trace_and_decision_with_its_own_span(services, upstream, headers, expected):
    service = services.get(export=True)
    expect_id = expected.trace if expected and expected.trace else None
    forwarded = read_setting(service, upstream, headers, expect_id=expect_id).upstream.b3()

    inbound_values = " ".join(value for _, value in headers)
    trace_id, span_id = forwarded["x-b3-traceid"], forwarded["x-b3-spanid"]
    assert HEX_ID.fullmatch(span_id) and span_id not in inbound_values
    assert "x-b3-parentspanid" not in forwarded and "b3" not in forwarded
    if expected is not None and expected.trace:
        assert trace_id == expected.trace  # same id, same width
    else:
        assert len(trace_id) == 32 and trace_id not in inbound_values  # a new trace
    # Deferred and malformed: this service decides, at the default ratio of 1.
    sampling = "accept" if expected is None or expected.sampling == "defer" else expected.sampling
    decision = {key: forwarded[key] for key in ("x-b3-sampled", "x-b3-flags") if key in forwarded}
    assert decision == {"deny": {"x-b3-sampled": "0"}, "accept": {"x-b3-sampled": "1"},
                        "debug": {"x-b3-flags": "1"}}[sampling]
