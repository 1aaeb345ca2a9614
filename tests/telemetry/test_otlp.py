"""OTLP export end to end: the reference service posts its spans to a real OTLP/HTTP receiver, which decodes
each body with the official protobuf definitions (opentelemetry-proto, pinned in
scripts/requirements-telemetry.txt), gzip and all.

Checked against what was sent in: trace, span and parent ids from the inbound B3 headers and the upstream call,
span kinds, status, the resource, the headers from OTEL_EXPORTER_OTLP_HEADERS; a denied trace never arrives;
and a receiver that answers 503 or never answers costs no request and no shutdown deadline.
"""

from __future__ import annotations

import gzip
import threading
import time

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from telemetry_support import (
    TOKEN,
    access_tokens,
    Seen,
    ServiceProcess,
    _Handler,
    _Recorder,
    new_key,
    new_span_id,
    new_trace_id,
    read_setting,
)

SECRET = "otlp-s3cr3t-token"


class OtlpReceiver(_Recorder):
    """Takes OTLP/HTTP posts to /v1/traces. `mode`: "ok" answers 200 with an empty response message, "503"
    answers 503, "hang" reads the request and never answers (until closed)."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.released = threading.Event()
        super().__init__(self._handler())

    def _handler(self) -> type[_Handler]:
        receiver = self

        class Handler(_Handler):
            def do_POST(self) -> None:
                seen = self._read()
                receiver.record(seen)
                if receiver.mode == "hang":
                    receiver.released.wait(60)
                    return
                if receiver.mode == "503":
                    self._reply(503, {"Content-Type": "text/plain"}, b"overloaded")
                    return
                self._reply(200, {"Content-Type": "application/x-protobuf"}, b"")

        return Handler

    def close(self) -> None:
        self.released.set()
        super().close()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def requests(self) -> list[tuple[Seen, ExportTraceServiceRequest]]:
        decoded = []
        with self.changed:
            posts = list(self.seen)
        for post in posts:
            body = post.body
            if post.get("content-encoding") == "gzip":
                body = gzip.decompress(body)
            message = ExportTraceServiceRequest()
            message.ParseFromString(body)
            decoded.append((post, message))
        return decoded

    def spans(self) -> list[tuple[dict[str, str], Span]]:
        """Every span received, with its resource's attributes."""
        found = []
        for _, message in self.requests():
            for resource_spans in message.resource_spans:
                resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
                for scope_spans in resource_spans.scope_spans:
                    found.extend((resource, span) for span in scope_spans.spans)
        return found

    def spans_of(self, trace_id: str) -> list[tuple[dict[str, str], Span]]:
        wanted = bytes.fromhex(trace_id.rjust(32, "0"))
        return [(resource, span) for resource, span in self.spans() if span.trace_id == wanted]

    def wait_for_trace(self, trace_id: str, count: int, timeout: float = 10.0):
        return self.wait_until(
            lambda: (lambda spans: spans if len(spans) >= count else None)(self.spans_of(trace_id)),
            timeout,
            f"{count} OTLP spans of trace {trace_id}",
        )


@pytest.fixture
def receiver():
    server = OtlpReceiver()
    yield server
    server.close()


def start(binary, upstream, jwks, receiver: OtlpReceiver, **env: str) -> ServiceProcess:
    full = {
        "KVSTORE_URL": f"http://127.0.0.1:{upstream.port}",
        **access_tokens.service_env(jwks),
        "CACHE_DISABLED": "true",
        "SHUTDOWN_DELAY": "0s",
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.base,
        "OTEL_BSP_SCHEDULE_DELAY": "50",
        **env,
    }
    return ServiceProcess(binary, full, "otlp[" + ",".join(f"{k}={v}" for k, v in sorted(env.items())) + "]")


def b3(trace_id: str, span_id: str, sampled: str) -> list[tuple[str, str]]:
    return [("X-B3-TraceId", trace_id), ("X-B3-SpanId", span_id), ("X-B3-Sampled", sampled)]


@pytest.mark.parametrize("compression", ["gzip", "none"])
def test_spans_arrive_as_otlp_with_the_ids_kinds_status_resource_and_headers(
        binary, upstream, jwks, receiver, compression):
    service = start(
        binary, upstream, jwks, receiver,
        OTEL_EXPORTER_OTLP_COMPRESSION=compression,
        OTEL_EXPORTER_OTLP_HEADERS=f"authorization=Bearer%20{SECRET},x-tenant=tele",
        OTEL_RESOURCE_ATTRIBUTES="deployment.environment=inttest,team=tele%20medicine",
    )
    try:
        trace_id, span_id = new_trace_id(), new_span_id()
        exchange = read_setting(service, upstream, b3(trace_id, span_id, "1"), expect_id=trace_id)
        spans = receiver.wait_for_trace(trace_id, 2)
    finally:
        assert service.stop() == 0

    server = next(span for _, span in spans if span.kind == Span.SPAN_KIND_SERVER)
    client = next(span for _, span in spans if span.kind == Span.SPAN_KIND_CLIENT)
    assert server.parent_span_id.hex() == span_id
    assert client.parent_span_id == server.span_id
    assert client.span_id.hex() == exchange.upstream.get("x-b3-spanid")
    assert server.name == "GET /settings/{key}"
    assert server.status.code == Status.STATUS_CODE_UNSET
    attributes = {a.key: a.value for a in server.attributes}
    assert attributes["http.request.method"].string_value == "GET"
    assert attributes["http.route"].string_value == "/settings/{key}"
    assert attributes["http.response.status_code"].int_value == 200

    resource = spans[0][0]
    assert resource["service.name"] == "reference-service"
    assert resource["service.version"]
    assert resource["deployment.environment"] == "inttest"
    assert resource["team"] == "tele medicine"

    posts = [post for post, _ in receiver.requests()]
    assert posts and all(post.path == "/v1/traces" for post in posts)
    assert all(post.get("content-type") == "application/x-protobuf" for post in posts)
    assert all(post.get("content-encoding") == ("gzip" if compression == "gzip" else None) for post in posts)
    assert all(post.get("authorization") == f"Bearer {SECRET}" and post.get("x-tenant") == "tele"
               for post in posts)
    # The header is a secret: nowhere in what the service wrote.
    assert not any(SECRET in line for line in service.lines)


def test_an_error_status_and_a_denied_trace(binary, upstream, jwks, receiver):
    service = start(binary, upstream, jwks, receiver)
    try:
        denied = new_trace_id()
        read_setting(service, upstream, b3(denied, new_span_id(), "0"))
        # The store fails: the service answers 502, and its server span says so.
        failing, key = new_trace_id(), new_key()
        upstream.replies[key] = (500, {}, b"broken")
        response = service.request("GET", f"/settings/{key}", b3(failing, new_span_id(), "1")
                                   + [("Authorization", f"Bearer {TOKEN}")])
        assert response.status == 502
        spans = receiver.wait_for_trace(failing, 2)
    finally:
        assert service.stop() == 0
    server = next(span for _, span in spans if span.kind == Span.SPAN_KIND_SERVER)
    assert server.status.code == Status.STATUS_CODE_ERROR
    # Spans leave in the order they end: the denied request came first, and nothing of it arrived.
    assert receiver.spans_of(denied) == []


@pytest.mark.parametrize("mode", ["503", "hang"])
def test_a_receiver_that_fails_or_hangs_costs_no_request_and_no_shutdown_deadline(binary, upstream, jwks, receiver,
                                                                                     mode):
    receiver.mode = mode
    grace = 6.0
    service = start(binary, upstream, jwks, receiver, SHUTDOWN_GRACE_PERIOD=f"{grace:g}s", OTEL_BSP_EXPORT_TIMEOUT="1000",
                    OTEL_EXPORTER_OTLP_HEADERS=f"authorization=Bearer%20{SECRET}")
    slowest = 0.0
    for _ in range(60):
        started = time.monotonic()
        read_setting(service, upstream, b3(new_trace_id(), new_span_id(), "1"))
        slowest = max(slowest, time.monotonic() - started)
    assert slowest < 1.0, f"a request took {slowest:.2f}s while the collector was down"
    # The exporter counts the spans of a post once the post has failed (at once for 503, after the export
    # timeout for a receiver that hangs).
    deadline = time.monotonic() + 10
    while failed_spans(metrics := service.request("GET", "/metrics").body.decode()) <= 0:
        assert time.monotonic() < deadline, f"no failed export counted within 10s:\n{metrics}"
        time.sleep(0.1)  # nothing signals a counter; polled against a deadline
    started = time.monotonic()
    code = service.stop(timeout=grace + 5)
    took = time.monotonic() - started
    assert code == 0 and took < grace, f"exit {code} after {took:.1f}s (grace period {grace}s)"
    assert failed_spans(metrics) > 0, metrics
    failed = [line for line in service.lines if "span export failed" in line]
    assert len(failed) == 1, failed
    assert SECRET not in "".join(service.lines)


def failed_spans(metrics: str) -> int:
    prefix = 'spans_dropped_total{exporter="otlp",reason="export_failed"} '
    return next((int(line[len(prefix):]) for line in metrics.splitlines() if line.startswith(prefix)), -1)
