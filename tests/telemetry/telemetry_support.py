"""Real peers for the telemetry tests: the reference service as a process, a key-value store posing downstream,
a Zipkin sink, and a record of everything they saw.

Everything here talks over real sockets on 127.0.0.1. The service is the binary built by
scripts/test-telemetry.sh (REFERENCE_SERVICE_BIN); its KVSTORE_URL points at `Upstream`, its
OTEL_EXPORTER_ZIPKIN_ENDPOINT (when exporting) at `ZipkinSink`. Every stdout and stderr line of every service
started here is kept in `CAPTURED` for the log-model checks, every response body in `RESPONSES`, and the trace
id each request's log lines must carry in `EXPECTED_IDS`.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import access_tokens  # noqa: E402 (tests/ is on the path only from here)

# Planted secrets: none of them may reach stdout, an exported span or a response body. The bearer token is a
# real one (the service verifies it): its payload and signature are the secret parts.
TOKEN = access_tokens.token()
COOKIE = "JSESSIONID=planted-cookie-secret-41c7"
API_KEY = "planted-api-key-secret-9d2e"
QUERY_TOKEN = "planted-query-token-secret-5a1f"
CPR_PLAIN = "0101901234"
CPR_DASHED = "010190-1234"
SECRETS = (TOKEN.split(".")[1], TOKEN.split(".")[2], COOKIE.split("=")[1], API_KEY, QUERY_TOKEN, CPR_PLAIN, CPR_DASHED)

HEX_ID = re.compile(r"[0-9a-f]{16}|[0-9a-f]{32}")

# What every service process wrote, as (service label, stream, line), in arrival order.
CAPTURED: list[tuple[str, str, str]] = []
# Every response body the services sent, with the request that caused it.
RESPONSES: list[tuple[str, bytes]] = []
# x-request-id -> the trace id that request's log lines must carry (None: no claim, the service chose one).
EXPECTED_IDS: dict[str, str | None] = {}
_captured_lock = threading.Lock()


def free_port() -> int:
    """A port free now on 127.0.0.1 (the tests run in a network namespace of their own, so nothing races)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def new_key() -> str:
    """A settings key no other request uses, so that the upstream request it causes can be told apart."""
    return "k-" + uuid.uuid4().hex[:20]


def new_request_id() -> str:
    """A fresh x-request-id of letters only. Random hex would now and then hold ten digits that read as a date,
    which the redactor masks like any CPR number (see test_a_cpr_number_in_x_request_id_is_masked), and the
    access line would then, rightly, not carry the id as sent."""
    return "req-" + uuid.uuid4().hex.translate(_DIGITS_TO_LETTERS)


_DIGITS_TO_LETTERS = str.maketrans("0123456789", "ghijklmnop")


def new_trace_id(bits: int = 128) -> str:
    return uuid.uuid4().hex[: bits // 4]


def new_span_id() -> str:
    return uuid.uuid4().hex[:16]


# ---------------------------------------------------------------------------------------------------------------
# Peers


@dataclass
class Seen:
    """One request as a peer received it: the header list is raw (order, case and repeats as sent)."""

    method: str
    path: str
    headers: list[tuple[str, str]]
    body: bytes

    def all(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key.lower() == name.lower()]

    def get(self, name: str) -> str | None:
        values = self.all(name)
        return values[0] if values else None

    def carrier(self) -> dict[str, list[str]]:
        """Lower-case name -> values, the carrier shape opentelemetry-python's default getter reads."""
        carrier: dict[str, list[str]] = {}
        for key, value in self.headers:
            carrier.setdefault(key.lower(), []).append(value)
        return carrier

    def b3(self) -> dict[str, str]:
        """The B3 headers received (lower-case names; each must arrive once)."""
        names = ("b3", "x-b3-traceid", "x-b3-spanid", "x-b3-parentspanid", "x-b3-sampled", "x-b3-flags")
        found = {}
        for name in names:
            values = self.all(name)
            assert len(values) <= 1, f"{name} sent {len(values)} times: {values}"
            if values:
                found[name] = values[0]
        return found


class _Recorder(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, handler: type[BaseHTTPRequestHandler]):
        super().__init__(("127.0.0.1", 0), handler)
        self.seen: list[Seen] = []
        self.changed = threading.Condition()
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return self.server_address[1]

    def record(self, seen: Seen) -> None:
        with self.changed:
            self.seen.append(seen)
            self.changed.notify_all()

    def wait_until(self, found: Callable[[], Any], timeout: float, what: str) -> Any:
        """Waits on the recorder's condition (notified on every request) until `found()` is truthy."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                result = found()
                if result:
                    return result
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
                self.changed.wait(remaining)

    def close(self) -> None:
        self.shutdown()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Recorder

    def log_message(self, *args: Any) -> None:  # the test output stays readable
        pass

    def _read(self) -> Seen:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        seen = Seen(self.command, self.path, list(self.headers.raw_items()), body)
        return seen

    def _reply(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


class Upstream(_Recorder):
    """Poses as the eHealth key-value store: GET answers 200 text/plain with `ETag: "x"` unless a reply is set
    for the key; POST and PUT answer 201/200 with an ETag; HEAD (the readiness ping) answers 200."""

    def __init__(self) -> None:
        self.replies: dict[str, tuple[int, dict[str, str], bytes]] = {}
        super().__init__(self._handler())

    def _handler(self) -> type[_Handler]:
        upstream = self

        class Handler(_Handler):
            def _serve(self) -> None:
                seen = self._read()
                upstream.record(seen)
                key = self.path.rsplit("/", 1)[-1]
                if key in upstream.replies:
                    self._reply(*upstream.replies[key])
                elif self.command in ("GET", "HEAD"):
                    self._reply(200, {"Content-Type": "text/plain", "ETag": '"x"'}, b"stored value")
                elif self.command == "POST":
                    self._reply(201, {"ETag": '"x"'}, b"")
                elif self.command == "PUT":
                    self._reply(200, {"ETag": '"y"'}, b"")
                else:
                    self._reply(204, {}, b"")

            do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _serve

        return Handler

    def request_for(self, key: str, timeout: float = 10.0, method: str = "GET") -> Seen:
        """The request the service sent upstream for `key`."""
        return self.wait_until(
            lambda: next((s for s in self.seen if s.method == method and s.path.endswith("/" + key)), None),
            timeout,
            f"the upstream {method} for key {key}",
        )

    def requests_for(self, key: str) -> list[Seen]:
        with self.changed:
            return [s for s in self.seen if s.path.endswith("/" + key)]


class ZipkinSink(_Recorder):
    """Records what exporters POST to /api/v2/spans and answers 202, as a Zipkin collector does."""

    def __init__(self) -> None:
        super().__init__(self._handler())

    def _handler(self) -> type[_Handler]:
        sink = self

        class Handler(_Handler):
            def do_POST(self) -> None:
                seen = self._read()
                sink.record(seen)
                self._reply(202, {}, b"")

        return Handler

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v2/spans"

    def posts(self) -> list[Seen]:
        with self.changed:
            return list(self.seen)

    def spans(self) -> list[dict[str, Any]]:
        """Every span posted so far (each POST body is a JSON list of spans)."""
        return [span for post in self.posts() for span in json.loads(post.body)]

    def spans_of(self, trace_id: str) -> list[dict[str, Any]]:
        """Spans whose traceId is `trace_id`, in the width it was given (a 64-bit id leaves as 16 digits)."""
        return [span for span in self.spans() if span.get("traceId") == trace_id]

    def wait_for_trace(self, trace_id: str, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        return self.wait_until(
            lambda: (lambda spans: spans if len(spans) >= count else None)(self.spans_of(trace_id)),
            timeout,
            f"{count} spans of trace {trace_id}",
        )


# ---------------------------------------------------------------------------------------------------------------
# The service


class ServiceProcess:
    """The reference service as a real process, its stdout and stderr captured line by line into `CAPTURED`."""

    def __init__(self, binary: Path, env: dict[str, str], label: str):
        self.label = label
        self.port = free_port()
        self.env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PORT": str(self.port), **env}
        self.lines: list[str] = []
        self._listening = threading.Event()
        self._keys_loaded = threading.Event()
        self.process = subprocess.Popen(
            [str(binary)],
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self._readers = [
            threading.Thread(target=self._read, args=(self.process.stdout, "stdout"), daemon=True),
            threading.Thread(target=self._read, args=(self.process.stderr, "stderr"), daemon=True),
        ]
        for reader in self._readers:
            reader.start()
        if not self._listening.wait(20):
            self.process.kill()
            raise AssertionError(f"{label}: no 'listening' line within 20s:\n{''.join(self.lines)}")
        # Until the issuer's keys are in, the settings routes answer 503: tests start once tokens can be checked.
        if not self._keys_loaded.wait(20):
            self.process.kill()
            raise AssertionError(f"{label}: the issuer's keys were not loaded within 20s:\n{''.join(self.lines)}")

    def _read(self, stream: Any, name: str) -> None:
        for line in stream:
            with _captured_lock:
                CAPTURED.append((self.label, name, line))
                self.lines.append(line)
            if name == "stdout" and '"body":"listening"' in line:
                self._listening.set()
            if name == "stdout" and access_tokens.keys_loaded(line):
                self._keys_loaded.set()

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, as the kubelet sends it; waits for the exit and for both pipes to close."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"{self.label}: still running {timeout}s after SIGTERM")
        for reader in self._readers:
            reader.join(timeout)
        return code

    def request(
        self,
        method: str,
        path: str,
        headers: list[tuple[str, str]] = (),
        body: bytes = b"",
    ) -> "Response":
        """One request on a fresh connection, headers sent exactly as given (repeats and case kept)."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=15)
        try:
            connection.putrequest(method, path, skip_accept_encoding=True)
            for name, value in headers:
                connection.putheader(name, value)
            if body or method in ("POST", "PUT"):
                connection.putheader("Content-Length", str(len(body)))
            connection.endheaders(body or None)
            raw = connection.getresponse()
            response = Response(raw.status, [(k.lower(), v) for k, v in raw.getheaders()], raw.read())
        finally:
            connection.close()
        RESPONSES.append((f"{self.label} {method} {path}", response.body))
        return response


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        return next((value for key, value in self.headers if key == name.lower()), None)


@dataclass
class Exchange:
    """A settings read through the service: what came back and what the upstream received."""

    response: Response
    upstream: Seen
    request_id: str | None


class Services:
    """Starts one service per distinct configuration, on first use, and keeps it for the session."""

    def __init__(self, binary: Path, upstream: Upstream, sink: ZipkinSink, jwks: access_tokens.JwksServer):
        self.binary = binary
        self.upstream = upstream
        self.sink = sink
        self.jwks = jwks
        self.running: dict[tuple[tuple[str, str], ...], ServiceProcess] = {}
        self.exit_codes: dict[str, int] = {}

    def base_env(self) -> dict[str, str]:
        return {
            "KVSTORE_URL": f"http://127.0.0.1:{self.upstream.port}",
            **access_tokens.service_env(self.jwks),
            # Every read reaches the upstream, so that each request's forwarded headers can be inspected.
            "CACHE_DISABLED": "true",
            "SHUTDOWN_DELAY": "0s",
            "LOG_FORMAT": "json",
            "LOG_LEVEL": "info",
        }

    def get(self, export: bool = False, **env: str) -> ServiceProcess:
        """The service with `env` on top of the base; `export` points it at the sink with a short batch delay."""
        full = self.base_env()
        if export:
            full["OTEL_EXPORTER_ZIPKIN_ENDPOINT"] = self.sink.endpoint
            # The SDK's batch delay (default 5 s) shortened so that tests wait on spans for milliseconds.
            full.setdefault("OTEL_BSP_SCHEDULE_DELAY", "50")
        full.update(env)
        key = tuple(sorted(full.items()))
        if key not in self.running:
            label = ",".join(f"{k}={v}" for k, v in sorted(env.items())) or "default"
            label = f"{'export' if export else 'no-export'}[{label}]"
            self.running[key] = ServiceProcess(self.binary, full, label)
        return self.running[key]

    def stop(self, service: ServiceProcess) -> int:
        """SIGTERM to one service; returns its exit code. A later `get` of its configuration starts a new one."""
        for key, running in list(self.running.items()):
            if running is service:
                del self.running[key]
        self.exit_codes[service.label] = service.stop()
        return self.exit_codes[service.label]

    def stop_all(self) -> dict[str, int]:
        """SIGTERM to every running service (which flushes its spans); returns each label's exit code."""
        for key, service in list(self.running.items()):
            self.exit_codes[service.label] = service.stop()
            del self.running[key]
        return self.exit_codes


def read_setting(
    service: ServiceProcess,
    upstream: Upstream,
    headers: list[tuple[str, str]] = (),
    *,
    key: str | None = None,
    token: str | None = TOKEN,
    request_id: str | None = "auto",
    expect_id: str | None = None,
    path_suffix: str = "",
) -> Exchange:
    """GET /settings/{key} with `headers` (plus a bearer token and a fresh x-request-id unless told otherwise);
    waits for the upstream request it causes. `expect_id` is the trace id its log lines must carry."""
    key = key or new_key()
    sent = list(headers)
    if token is not None:
        sent.append(("Authorization", f"Bearer {token}"))
    if request_id == "auto":
        request_id = new_request_id()
    if request_id is not None:
        sent.append(("x-request-id", request_id))
        EXPECTED_IDS[request_id] = expect_id
    response = service.request("GET", f"/settings/{key}{path_suffix}", sent)
    assert response.status == 200, f"{response.status}: {response.body!r}"
    return Exchange(response, upstream.request_for(key), request_id)


# ---------------------------------------------------------------------------------------------------------------
# Schemas and documents


def zipkin_span_schema() -> dict[str, Any]:
    """definitions/Span of the Zipkin v2 API as a JSON Schema (Swagger 2's definitions are draft-4 schemas)."""
    import yaml

    api = yaml.safe_load((HERE / "zipkin2-api.yaml").read_text())
    return {"$schema": "http://json-schema.org/draft-04/schema#", "definitions": api["definitions"],
            "$ref": "#/definitions/Span"}


def documented_log_keys() -> tuple[set[str], set[str]]:
    """(fixed keys, every key docs/logging.md documents): the backticked names in the first column of each
    table whose first header cell is `Key`."""
    fixed: set[str] = set()
    documented: set[str] = set()
    in_table = False
    is_fixed_table = False
    for line in (ROOT / "docs" / "logging.md").read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")] if line.startswith("|") else None
        if cells is None:
            in_table = False
            continue
        if not in_table:
            in_table = True
            header = cells
            is_key_table = header[0] == "Key"
            is_fixed_table = is_key_table and header[1:] == ["Value"]
            continue
        if not is_key_table or set(cells[0]) <= {"-", ":", " "}:
            continue
        names = set(re.findall(r"`([a-z_0-9]+)`", cells[0]))
        documented |= names
        if is_fixed_table:
            fixed |= names
    return fixed, documented
