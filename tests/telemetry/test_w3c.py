"""W3C Trace Context through the real service, with OpenTelemetry Python's TraceContextTextMapPropagator
(opentelemetry-api, pinned in scripts/requirements-telemetry.txt) as the peer that reads what the service sends.

Each `traceparent` row carries what the W3C recommendation says of it (valid or ignored); the peer must read it
the same way, so that a row whose expectation is wrong fails against an independent implementation, and the
service must act on it the same way: continue the trace, or start a new one and pass nothing of it on.
"""

from __future__ import annotations

import pytest
from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from telemetry_support import HEX_ID, new_span_id, new_trace_id, read_setting

PEER = TraceContextTextMapPropagator()
T = "4bf92f3577b34da6a3ce929d0e0e4736"
P = "00f067aa0ba902b7"
STATE = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"


def row(name: str, value: str, sampled: bool | None):
    """`sampled` is the caller's decision of a valid value, None for a value the recommendation says to ignore."""
    return pytest.param(value, sampled, id=name)


TRACEPARENTS = [
    row("sampled", f"00-{T}-{P}-01", True),
    row("not-sampled", f"00-{T}-{P}-00", False),
    row("unknown-flags-keep-sampled", f"00-{T}-{P}-ff", True),
    row("later-version-with-more-fields", f"cc-{T}-{P}-01-what-the-future-holds", True),
    row("later-version", f"cc-{T}-{P}-01", True),
    row("spaces-and-tabs-around", f" \t00-{T}-{P}-01 ", True),
    row("version-ff", f"ff-{T}-{P}-01", None),
    row("upper-case-version", f"0A-{T}-{P}-01", None),
    row("upper-case-trace-id", f"00-{T.upper()}-{P}-01", None),
    row("upper-case-parent-id", f"00-{T}-{P.upper()}-01", None),
    row("upper-case-flags", f"00-{T}-{P}-0A", None),
    row("all-zero-trace-id", f"00-{'0' * 32}-{P}-01", None),
    row("all-zero-parent-id", f"00-{T}-{'0' * 16}-01", None),
    row("extra-field-under-00", f"00-{T}-{P}-01-extra", None),
    row("trailing-dash-under-00", f"00-{T}-{P}-01-", None),
    row("short-trace-id", f"00-{T[:31]}-{P}-01", None),
    row("short-parent-id", f"00-{T}-{P[:15]}-01", None),
    row("long-flags", f"00-{T}-{P}-001", None),
    row("later-version-glued-field", f"cc-{T}-{P}-01x", None),
    row("short-fields", "00-abc-def-01", None),
    row("plus-sign", f"00-+{T[1:]}-{P}-01", None),
    row("empty", "", None),
]


def peer_reads(headers: dict[str, str]) -> trace.SpanContext | None:
    context = trace.get_current_span(PEER.extract({k: [v] for k, v in headers.items()})).get_span_context()
    return context if context.is_valid else None


@pytest.mark.parametrize("value, sampled", TRACEPARENTS)
def test_the_peer_reads_each_row_as_the_recommendation_says(value, sampled):
    read = peer_reads({"traceparent": value})
    assert (read is None) == (sampled is None), read
    if read is not None:
        assert (f"{read.trace_id:032x}", f"{read.span_id:016x}", read.trace_flags.sampled) == (T, P, sampled)


@pytest.mark.parametrize("value, sampled", TRACEPARENTS)
def test_without_export_a_valid_traceparent_goes_on_in_both_forms_and_a_malformed_one_is_ignored(
        services, upstream, value, sampled):
    exchange = read_setting(services.get(), upstream, [("traceparent", value), ("tracestate", STATE)],
                            expect_id=T if sampled is not None else None)
    sent = exchange.upstream
    if sampled is None:
        assert sent.b3() == {} and sent.all("traceparent") == [] and sent.all("tracestate") == [], sent.headers
        return
    # Written as version 00 with the sampled flag only, whatever version and flags came in.
    flags = "01" if sampled else "00"
    assert sent.all("traceparent") == [f"00-{T}-{P}-{flags}"]
    assert sent.all("tracestate") == [STATE]
    assert sent.b3() == {"x-b3-traceid": T, "x-b3-spanid": P, "x-b3-sampled": "1" if sampled else "0"}
    read = peer_reads({"traceparent": sent.get("traceparent"), "tracestate": sent.get("tracestate")})
    assert read is not None and read.trace_state.to_header() == STATE


@pytest.mark.parametrize("value, sampled", TRACEPARENTS)
def test_exporting_continues_a_valid_trace_with_its_own_span_and_the_callers_decision(
        services, upstream, value, sampled):
    exchange = read_setting(services.get(export=True), upstream, [("traceparent", value)],
                            expect_id=T if sampled is not None else None)
    sent = exchange.upstream
    read = peer_reads({"traceparent": sent.get("traceparent")})
    assert read is not None, sent.headers
    b3 = sent.b3()
    # One span, in both forms.
    assert (f"{read.trace_id:032x}", f"{read.span_id:016x}") == (b3["x-b3-traceid"], b3["x-b3-spanid"])
    assert HEX_ID.fullmatch(b3["x-b3-spanid"]) and b3["x-b3-spanid"] != P
    if sampled is None:
        assert b3["x-b3-traceid"] != T and read.trace_flags.sampled  # a new trace, sampled at the ratio of 1
    else:
        assert b3["x-b3-traceid"] == T and read.trace_flags.sampled == sampled
        assert b3["x-b3-sampled"] == ("1" if sampled else "0")


@pytest.mark.parametrize("precedence, winner", [(None, "b3"), ("b3", "b3"), ("w3c", "w3c")])
def test_with_both_present_the_configured_context_wins(services, upstream, precedence, winner):
    env = {"TRACE_CONTEXT_PRECEDENCE": precedence} if precedence else {}
    b3_trace, b3_span = new_trace_id(), new_span_id()
    w3c_trace, w3c_span = new_trace_id(), new_span_id()
    headers = [("b3", f"{b3_trace}-{b3_span}-1"), ("traceparent", f"00-{w3c_trace}-{w3c_span}-01"),
               ("tracestate", STATE)]
    trace_id, span_id = (b3_trace, b3_span) if winner == "b3" else (w3c_trace, w3c_span)
    sent = read_setting(services.get(**env), upstream, headers, expect_id=trace_id).upstream
    assert sent.b3()["x-b3-traceid"] == trace_id and sent.b3()["x-b3-spanid"] == span_id
    assert sent.all("traceparent") == [f"00-{trace_id}-{span_id}-01"]
    # The tracestate belongs to the W3C trace: it goes on only with it.
    assert sent.all("tracestate") == ([STATE] if winner == "w3c" else [])


def test_a_malformed_b3_falls_back_to_the_traceparent(services, upstream):
    trace_id, span_id = new_trace_id(), new_span_id()
    headers = [("b3", "not-b3"), ("traceparent", f"00-{trace_id}-{span_id}-01")]
    sent = read_setting(services.get(), upstream, headers, expect_id=trace_id).upstream
    assert sent.b3()["x-b3-traceid"] == trace_id
    assert sent.all("traceparent") == [f"00-{trace_id}-{span_id}-01"]
