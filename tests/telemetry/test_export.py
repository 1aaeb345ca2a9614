"""Zipkin export end to end: the spans the service posts to a local sink, how they chain to the caller's span
and to what the upstream received, and which requests are exported at all.

Spans are checked against the Zipkin v2 API's `definitions/Span` (vendored zipkin2-api.yaml) with jsonschema.
The services here shorten the SDK's batch delay (OTEL_BSP_SCHEDULE_DELAY) so that tests wait milliseconds;
`test_spans_are_flushed_at_shutdown` keeps a long delay and relies on the SIGTERM flush alone.
"""

from __future__ import annotations

import jsonschema
import pytest

from telemetry_support import new_span_id, new_trace_id, read_setting, zipkin_span_schema

SPAN = jsonschema.Draft4Validator(zipkin_span_schema())


def zipkin_normalized(trace_id: str) -> str:
    """The trace id as a Zipkin server stores it (zipkin2.Span.normalizeTraceId): a 32-digit id whose upper
    64 bits are zero is the 64-bit id, so it is kept as 16 digits."""
    return trace_id[16:] if len(trace_id) == 32 and trace_id.startswith("0" * 16) else trace_id


def server_and_client(spans: list[dict]) -> tuple[dict, dict]:
    kinds = sorted(span.get("kind") for span in spans)
    assert kinds == ["CLIENT", "SERVER"], spans
    server = next(span for span in spans if span["kind"] == "SERVER")
    client = next(span for span in spans if span["kind"] == "CLIENT")
    return server, client


def marker(service, upstream, sink) -> None:
    """A sampled request whose spans are waited for: once they are in, anything exported before them is too
    (one ordered queue, one exporter)."""
    trace_id = new_trace_id()
    read_setting(service, upstream, [("b3", f"{trace_id}-{new_span_id()}-1")], expect_id=trace_id)
    sink.wait_for_trace(trace_id, 2)


@pytest.mark.parametrize("width", [128, 64])
@pytest.mark.parametrize("inbound", ["multi", "single"])
def test_server_and_client_spans_chain_to_the_inbound_span(services, upstream, sink, inbound, width):
    service = services.get(export=True)
    trace_id, span_id, parent_id = new_trace_id(width), new_span_id(), new_span_id()
    headers = (
        [("X-B3-TraceId", trace_id), ("X-B3-SpanId", span_id), ("X-B3-ParentSpanId", parent_id),
         ("X-B3-Sampled", "1")]
        if inbound == "multi"
        else [("b3", f"{trace_id}-{span_id}-1-{parent_id}")]
    )
    exchange = read_setting(service, upstream, headers, expect_id=trace_id)
    spans = sink.wait_for_trace(trace_id, 2)
    for span in spans:
        SPAN.validate(span)
    server, client = server_and_client(spans)

    assert server["parentId"] == span_id
    assert client["parentId"] == server["id"]
    assert len({span_id, server["id"], client["id"]}) == 3
    assert server["name"] == "GET /settings/{key}" and server["tags"]["http.route"] == "/settings/{key}"
    assert server["tags"]["http.response.status_code"] == "200" == client["tags"]["http.response.status_code"]
    # The client call happened inside the server span.
    assert server["timestamp"] <= client["timestamp"]
    assert client["timestamp"] + client["duration"] <= server["timestamp"] + server["duration"]

    forwarded = exchange.upstream.b3()
    assert forwarded == {"x-b3-traceid": trace_id, "x-b3-spanid": client["id"], "x-b3-sampled": "1"}
    # The inbound trace id everywhere, in the width it arrived in: a 64-bit id as its 16 digits, which is also
    # how a Zipkin server stores it, so the spans join the trace the other 64-bit participants report.
    for span in spans:
        assert span["traceId"] == trace_id == zipkin_normalized(span["traceId"])


def test_without_export_the_inbound_span_is_forwarded_unchanged(services, upstream):
    service = services.get(export=False)
    trace_id, span_id, parent_id = new_trace_id(), new_span_id(), new_span_id()
    exchange = read_setting(
        service, upstream,
        [("X-B3-TraceId", trace_id), ("X-B3-SpanId", span_id), ("X-B3-ParentSpanId", parent_id),
         ("X-B3-Sampled", "1")],
        expect_id=trace_id,
    )
    assert exchange.upstream.b3() == {
        "x-b3-traceid": trace_id, "x-b3-spanid": span_id, "x-b3-parentspanid": parent_id, "x-b3-sampled": "1"}


def test_a_root_request_starts_a_trace_of_its_own(services, upstream, sink):
    service = services.get(export=True)
    exchange = read_setting(service, upstream)
    forwarded = exchange.upstream.b3()
    trace_id = forwarded["x-b3-traceid"]
    assert len(trace_id) == 32 and forwarded["x-b3-sampled"] == "1"
    server, client = server_and_client(sink.wait_for_trace(trace_id, 2))
    SPAN.validate(server)
    # The schema says a root span has no parentId.
    assert "parentId" not in server
    assert client["parentId"] == server["id"] and forwarded["x-b3-spanid"] == client["id"]


@pytest.mark.parametrize("headers", [
    lambda t, s: [("X-B3-TraceId", t), ("X-B3-SpanId", s), ("X-B3-Sampled", "0")],
    lambda t, s: [("b3", f"{t}-{s}-0")],
], ids=["multi", "single"])
def test_a_denied_trace_is_not_exported_but_its_decision_is_forwarded(services, upstream, sink, headers):
    service = services.get(export=True)
    trace_id, span_id = new_trace_id(), new_span_id()
    exchange = read_setting(service, upstream, headers(trace_id, span_id), expect_id=trace_id)
    forwarded = exchange.upstream.b3()
    assert forwarded["x-b3-traceid"] == trace_id and forwarded["x-b3-sampled"] == "0"
    assert "x-b3-flags" not in forwarded
    marker(service, upstream, sink)
    assert sink.spans_of(trace_id) == []


def test_a_sampling_only_deny_is_kept_for_the_new_trace(services, upstream, sink):
    service = services.get(export=True)
    exchange = read_setting(service, upstream, [("b3", "0")])
    forwarded = exchange.upstream.b3()
    assert forwarded["x-b3-sampled"] == "0"
    marker(service, upstream, sink)
    assert sink.spans_of(forwarded["x-b3-traceid"]) == []


@pytest.mark.parametrize("inject_mode", ["multi", "single"])
def test_debug_is_kept(services, upstream, sink, inject_mode):
    service = services.get(export=True, B3_INJECT=inject_mode)
    trace_id = new_trace_id()
    exchange = read_setting(service, upstream, [("b3", f"{trace_id}-{new_span_id()}-d")], expect_id=trace_id)
    server, client = server_and_client(sink.wait_for_trace(trace_id, 2))
    expected = (
        {"x-b3-traceid": trace_id, "x-b3-spanid": client["id"], "x-b3-flags": "1"}
        if inject_mode == "multi"
        else {"b3": f"{trace_id}-{client['id']}-d"}
    )
    assert exchange.upstream.b3() == expected


def test_debug_spans_are_exported_with_the_debug_flag(services, upstream, sink):
    service = services.get(export=True)
    trace_id = new_trace_id()
    read_setting(service, upstream, [("X-B3-TraceId", trace_id), ("X-B3-SpanId", new_span_id()),
                                     ("X-B3-Flags", "1")], expect_id=trace_id)
    assert [span["debug"] for span in sink.wait_for_trace(trace_id, 2)] == [True, True]


def test_spans_name_the_service(services, upstream, sink):
    service = services.get(export=True)
    trace_id = new_trace_id()
    read_setting(service, upstream, [("b3", f"{trace_id}-{new_span_id()}-1")], expect_id=trace_id)
    spans = sink.wait_for_trace(trace_id, 2)
    assert [span.get("localEndpoint", {}).get("serviceName") for span in spans] == ["reference-service"] * 2


@pytest.mark.parametrize("ratio, sampled", [("0", False), ("1", True)])
def test_a_deferred_decision_goes_to_the_root_ratio(services, upstream, sink, ratio, sampled):
    service = services.get(export=True, OTEL_TRACES_SAMPLER_ARG=ratio)
    trace_id, span_id = new_trace_id(), new_span_id()
    exchange = read_setting(service, upstream, [("X-B3-TraceId", trace_id), ("X-B3-SpanId", span_id)],
                            expect_id=trace_id)
    forwarded = exchange.upstream.b3()
    # The service decided, so the decision travels on (B3: a participant that decides propagates it).
    assert forwarded["x-b3-traceid"] == trace_id and forwarded["x-b3-sampled"] == ("1" if sampled else "0")
    assert forwarded["x-b3-spanid"] != span_id
    marker(service, upstream, sink)  # an accepted trace is exported whatever the ratio
    assert len(sink.spans_of(trace_id)) == (2 if sampled else 0)


def test_spans_are_flushed_at_shutdown(services, upstream, sink):
    # A batch delay of a minute: only the shutdown flush can deliver these spans while the test waits.
    service = services.get(export=True, OTEL_BSP_SCHEDULE_DELAY="60000")
    trace_id = new_trace_id()
    read_setting(service, upstream, [("b3", f"{trace_id}-{new_span_id()}-1")], expect_id=trace_id)
    assert sink.spans_of(trace_id) == []
    assert services.stop(service) == 0, "".join(service.lines)
    spans = sink.spans_of(trace_id)
    assert sorted(span["kind"] for span in spans) == ["CLIENT", "SERVER"]


def test_posts_are_zipkin_v2_json_lists(services, upstream, sink):
    marker(services.get(export=True), upstream, sink)
    posts = sink.posts()
    assert posts and all(post.path == "/api/v2/spans" for post in posts)
    assert {post.get("Content-Type") for post in posts} == {"application/json"}
