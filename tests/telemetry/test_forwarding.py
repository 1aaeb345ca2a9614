"""Headers the platform asks every service to pass from an inbound request to each outbound request it causes
(eHealth Call Tracing, Istio): x-request-id, x-ot-span-context and the audit header x-audit-restriction-levels,
verbatim; and the caller's Authorization, relayed by the settings API. The trace context itself (B3,
traceparent, tracestate) is written by the propagator: test_b3_*.py and test_w3c.py.
"""

from __future__ import annotations

import re
import tomllib

import pytest

from telemetry_support import API_KEY, COOKIE, ROOT, TOKEN, read_setting

UUID_V4 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")

PASSED_ON = {
    "x-ot-span-context": "463ac35c9f6413ad;463ac35c9f6413ad;0000000000000000;cs",
    "x-audit-restriction-levels": "NotCitizen,NotGuardian",
}


@pytest.mark.parametrize("export", [False, True], ids=["forwarding", "exporting"])
def test_trace_and_audit_headers_are_forwarded_verbatim(services, upstream, export):
    service = services.get(export=export)
    # Mixed-case names on the way in: HTTP header names are case-insensitive.
    headers = [(name.upper() if i % 2 else name, value) for i, (name, value) in enumerate(PASSED_ON.items())]
    exchange = read_setting(service, upstream, headers + [("X-Not-Forwarded", "x")])
    for name, value in PASSED_ON.items():
        assert exchange.upstream.all(name) == [value], name
    assert exchange.upstream.get("x-not-forwarded") is None


@pytest.mark.parametrize("request_id", [
    "7b0c8a4e-1f7d-4c4e-9d0a-2b5f3c9e8a11",
    "envoy:generated/Id+with=punctuation~" + "9" * 60,
])
def test_a_request_id_is_forwarded_and_echoed_verbatim(services, upstream, request_id):
    exchange = read_setting(services.get(), upstream, request_id=request_id)
    assert exchange.upstream.all("x-request-id") == [request_id]
    assert exchange.response.header("x-request-id") == request_id


def test_a_missing_request_id_is_generated_forwarded_and_echoed(services, upstream):
    exchange = read_setting(services.get(), upstream, request_id=None)
    generated = exchange.response.header("x-request-id")
    assert generated and UUID_V4.fullmatch(generated), generated
    assert exchange.upstream.all("x-request-id") == [generated]
    again = read_setting(services.get(), upstream, request_id=None)
    assert again.response.header("x-request-id") != generated


@pytest.mark.parametrize("bad", ["x" * 129, "has space", ""], ids=["too-long", "space", "empty"])
def test_an_unusable_request_id_is_replaced(services, upstream, bad):
    exchange = read_setting(services.get(), upstream, [("x-request-id", bad)], request_id=None)
    replaced = exchange.response.header("x-request-id")
    assert UUID_V4.fullmatch(replaced or ""), replaced
    assert exchange.upstream.all("x-request-id") == [replaced]


def test_an_oversized_trace_header_is_dropped_not_truncated(services, upstream):
    oversized = "congo=" + "a" * 1100
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    exchange = read_setting(services.get(), upstream, [("tracestate", oversized), ("traceparent", traceparent)],
                            expect_id="0af7651916cd43dd8448eb211c80319c")
    assert exchange.upstream.all("tracestate") == []
    assert exchange.upstream.all("traceparent") == [traceparent]


def test_authorization_is_relayed_and_other_credentials_are_not(services, upstream):
    exchange = read_setting(services.get(), upstream, [("Cookie", COOKIE), ("X-Api-Key", API_KEY)])
    assert exchange.upstream.all("authorization") == [f"Bearer {TOKEN}"]
    assert exchange.upstream.all("cookie") == [] and exchange.upstream.all("x-api-key") == []
    # R17: the service names itself.
    version = tomllib.loads((ROOT / "Cargo.toml").read_text())["workspace"]["package"]["version"]
    assert exchange.upstream.all("user-agent") == [f"reference-service/{version}"]
