"""The eHealth logging model, checked on every line every service of this session wrote, and planted secrets
checked against every output: stdout, exported spans, response bodies.

docs/logging.md is the single source of the allowed keys: the tests parse its key tables, so a key the code
writes and the doc does not list fails here. The checks run after every other test (marker `after_all`), so
they cover the lines of every request the other modules made too; they stop the services first, so that the
shutdown lines and the last spans are in.
"""

from __future__ import annotations

import json
import os
import re
from datetime import datetime, timezone
from pathlib import Path

import jsonschema
import pytest

from telemetry_support import (
    API_KEY, CAPTURED, COOKIE, CPR_DASHED, CPR_PLAIN, EXPECTED_IDS, HEX_ID, QUERY_TOKEN, RESPONSES, SECRETS,
    TOKEN, documented_log_keys, new_span_id, new_trace_id, read_setting, zipkin_span_schema,
)

TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z")
SEVERITIES = {"critical", "high", "medium", "low", "informational"}
TYPES = {"alarm", "alert", "event", "task"}
FIXED_ORDER = ["time", "app", "body", "id", "severity", "subject", "type"]
FIXED, DOCUMENTED = documented_log_keys()


def test_the_documented_keys_were_found():
    """Guards the doc parser: were the tables renamed, every key would look undocumented or none would."""
    assert FIXED == set(FIXED_ORDER)
    assert {"http_method", "uri_path", "status", "duration", "request_id", "phase", "check"} <= DOCUMENTED


@pytest.fixture(scope="session")
def planted(services, upstream) -> list[tuple[str, int]]:
    """Requests carrying every kind of secret, in path, query, headers and body, to a service with and one
    without export; returns (what, status) for each. The upstream fails for one key so that error paths
    (alert lines, error spans, 502 bodies) are covered too."""
    failing_key = f"{CPR_PLAIN}-fails"
    upstream.replies[failing_key] = (500, {"Content-Type": "text/plain"}, b"upstream broke")
    secret_headers = [
        ("Authorization", f"Bearer {TOKEN}"),
        ("Cookie", COOKIE),
        ("X-Api-Key", API_KEY),
        ("X-Patient", CPR_DASHED),
        ("User-Agent", f"telemed-app/2.1 (patient {CPR_PLAIN})"),
    ]
    query = f"?access_token={QUERY_TOKEN}&patient={CPR_DASHED}"
    outcomes = []
    for export in (False, True):
        service = services.get(export=export)
        trace = [("b3", f"{new_trace_id()}-{new_span_id()}-1")]
        for method, path, headers, body in [
            ("GET", f"/settings/{CPR_PLAIN}{query}", secret_headers + trace, f"cpr={CPR_PLAIN}".encode()),
            ("GET", f"/settings/{CPR_DASHED}{query}", secret_headers, b""),
            ("GET", f"/settings/{failing_key}{query}", secret_headers + trace, b""),
            ("GET", f"/settings/{CPR_PLAIN}!{query}", secret_headers, b""),
            ("GET", f"/settings/{CPR_PLAIN}{query}", secret_headers[1:], b""),
            ("PUT", f"/settings/{CPR_PLAIN}{query}", secret_headers + [("Content-Type", "application/json")],
             f'{{"cpr": "{CPR_DASHED}"'.encode()),
            ("GET", f"/patients/{CPR_PLAIN}{query}", secret_headers, b""),
        ]:
            response = service.request(method, path, headers, body)
            outcomes.append((f"{service.label} {method} {path}", response.status))
    return outcomes


def test_planted_requests_took_the_paths_they_were_meant_to(planted):
    statuses = [status for _, status in planted]
    assert statuses == [200, 200, 502, 400, 401, 400, 404] * 2, planted


@pytest.fixture
def finished(services, planted) -> dict[str, int]:
    """Every service stopped (spans flushed, shutdown lines written); their exit codes."""
    return services.stop_all()


@pytest.mark.after_all
def test_every_service_exited_cleanly(finished):
    assert finished and set(finished.values()) == {0}, finished


@pytest.mark.after_all
def test_every_line_the_services_wrote_follows_the_log_model(finished):
    assert CAPTURED, "no service wrote anything"
    stderr = [line for _, stream, line in CAPTURED if stream == "stderr"]
    assert stderr == [], "the log model allows stdout only"
    access_lines: dict[str, list[dict]] = {}
    problems = []
    for label, _, raw in CAPTURED:
        try:
            line = json.loads(raw)
        except json.JSONDecodeError as error:
            problems.append(f"{label}: not JSON ({error}): {raw!r}")
            continue
        if not isinstance(line, dict):
            problems.append(f"{label}: not an object: {raw!r}")
            continue
        problems += [f"{label}: {problem}: {raw.strip()}" for problem in line_problems(line)]
        if line.get("subject") == "access":
            access_lines.setdefault(line.get("request_id"), []).append(line)
    assert problems == [], "\n".join(problems)

    checked = 0
    for request_id, expected in EXPECTED_IDS.items():
        lines = access_lines.get(request_id, [])
        assert len(lines) == 1, f"{request_id}: {len(lines)} access lines"
        if expected is not None:
            assert "id" in lines[0], f"{request_id}: access line without id: {lines[0]}"
            assert lines[0]["id"] == expected, (request_id, lines[0])
            checked += 1
    assert checked > 100, "too few requests with a known inbound trace id reached this check"


# The request id on which CI once caught a random "req-" + hex id: 280990-6463 reads as a CPR number.
CPR_IN_REQUEST_ID = "req-2809906463bd4a9cbea6a542d3202034"


@pytest.fixture(scope="session")
def cpr_in_request_id(services, upstream) -> int:
    """One read whose x-request-id holds ten digits that form a date; returns its status."""
    exchange = read_setting(services.get(), upstream, request_id=None,
                            headers=[("x-request-id", CPR_IN_REQUEST_ID)])
    return exchange.response.status


@pytest.mark.after_all
def test_a_cpr_number_in_x_request_id_is_masked(cpr_in_request_id, finished):
    """A request id is client input like any other: the access line keeps what is not a CPR number."""
    assert cpr_in_request_id == 200
    lines = [json.loads(raw) for _, _, raw in CAPTURED if CPR_IN_REQUEST_ID[14:] in raw]
    access = [line.get("request_id") for line in lines if line.get("subject") == "access"]
    assert access == ["req-xxxxxxxxxxbd4a9cbea6a542d3202034"], lines
    assert not [raw for _, _, raw in CAPTURED if "2809906463" in raw]


RUST_SUITE_STDOUT = os.environ.get("RUST_SUITE_STDOUT_DIR")


@pytest.mark.skipif(not RUST_SUITE_STDOUT, reason="scripts/test-telemetry.sh sets RUST_SUITE_STDOUT_DIR after it "
                    "runs the Rust process suites with their stdout copied")
def test_every_line_of_the_rust_process_suites_follows_the_log_model():
    """The lines of every process the Rust lifecycle suite started (telemed_kit::testing::ServiceProcess copies
    them out when TELEMED_KIT_TEST_STDOUT_DIR is set): in-flight requests at shutdown, deadline alarms, hooks."""
    files = sorted(Path(RUST_SUITE_STDOUT).glob("*.log"))
    assert files, f"no process output in {RUST_SUITE_STDOUT}"
    problems, count = [], 0
    for file in files:
        for raw in file.read_text().splitlines():
            count += 1
            try:
                line = json.loads(raw)
            except json.JSONDecodeError as error:
                problems.append(f"{file.name}: not JSON ({error}): {raw!r}")
                continue
            if not isinstance(line, dict):
                problems.append(f"{file.name}: not an object: {raw!r}")
                continue
            # The testbed's own events (subject kit_testbed) are fixtures with keys of their own; the doc
            # governs what the kit writes.
            kit_line = str(line.get("subject", "")).startswith("telemed_kit") or line.get("subject") == "access"
            problems += [f"{file.name}: {problem}: {raw}"
                         for problem in line_problems(line, app=None, documented_only=kit_line)]
    assert count > 0
    assert problems == [], "\n".join(problems)


def line_problems(line: dict, app: str | None = "reference-service", documented_only: bool = True) -> list[str]:
    problems = []
    missing = [key for key in FIXED_ORDER if key != "id" and key not in line]
    if missing:
        return [f"missing {missing}"]
    order = [key for key in line if key in FIXED]
    if order != [key for key in FIXED_ORDER if key in line] or list(line)[: len(order)] != order:
        problems.append(f"fixed keys out of order: {list(line)}")
    if not (isinstance(line["time"], str) and TIME.fullmatch(line["time"])):
        problems.append(f"time {line['time']!r} is not RFC 3339 UTC with microseconds and Z")
    else:
        parsed = datetime.strptime(line["time"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
        if abs((datetime.now(timezone.utc) - parsed).total_seconds()) > 3600:
            problems.append(f"time {line['time']} is not now")
    if not (isinstance(line["app"], str) and line["app"]) or (app is not None and line["app"] != app):
        problems.append(f"app {line['app']!r}")
    if not isinstance(line["body"], str):
        problems.append("body is not a string")
    if line["severity"] not in SEVERITIES:
        problems.append(f"severity {line['severity']!r}")
    if line["type"] not in TYPES:
        problems.append(f"type {line['type']!r}")
    if not (isinstance(line["subject"], str) and line["subject"]):
        problems.append("empty subject")
    if "id" in line and not (isinstance(line["id"], str) and HEX_ID.fullmatch(line["id"])):
        problems.append(f"id {line['id']!r} is not 16 or 32 lower-case hex digits")
    if line["subject"] == "access" and "request_id" not in line:
        problems.append("access line without request_id")
    undocumented = sorted(
        key for key in line
        if key not in DOCUMENTED and not (key.startswith("field_") and key[len("field_"):] in FIXED)
    ) if documented_only else []
    if undocumented:
        problems.append(f"keys not documented in docs/logging.md: {undocumented}")
    return problems


def leaks(text: str) -> list[str]:
    return [secret for secret in SECRETS if secret in text]


@pytest.mark.after_all
def test_no_secret_reaches_stdout(finished):
    found = {(label, secret) for label, _, line in CAPTURED for secret in leaks(line)}
    assert found == set()


@pytest.mark.after_all
def test_no_secret_reaches_an_exported_span(finished, sink):
    schema = jsonschema.Draft4Validator(zipkin_span_schema())
    posts = sink.posts()
    assert posts, "nothing was exported"
    for post in posts:
        for span in json.loads(post.body):
            schema.validate(span)
    found = {(span.get("name"), secret) for post in posts for span in json.loads(post.body)
             for secret in leaks(json.dumps(span))}
    assert found == set()


@pytest.mark.after_all
def test_no_secret_reaches_a_response_body(finished):
    assert len(RESPONSES) > 100
    found = {(what, secret) for what, body in RESPONSES for secret in leaks(body.decode("utf-8", "replace"))}
    assert found == set()
