#!/usr/bin/env python3
"""A small telemedicine service in plain Python (standard library only) that follows the platform's container
rules, so that telemed-conform can be proven on a service not written with the kit and not in Rust.

Routes: /livez, /healthz, /slow (about a second), /call (one call to UPSTREAM_URL), anything else 404.
Variables: PORT (8080), UPSTREAM_URL, SHUTDOWN_DELAY (1.5 s), SHUTDOWN_GRACE_PERIOD (10 s), and FAULT: one rule
broken on purpose (see FAULTS), for the checker's tests. Without FAULT, every check passes.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

FAULTS = {
    "liveness-503": "liveness answers 503",
    "never-ready": "readiness never answers 200",
    "plain-log": "a plain-text line on stdout",
    "log-query": "the access log writes the query string as received (secrets and all)",
    "no-alert": "a 4xx answer is logged as an ordinary event",
    "drop-b3-multi": "only the single b3 header is passed on",
    "drop-b3-single": "only the X-B3-* headers are passed on",
    "drop-request-id": "x-request-id is not passed on",
    "default-agent": "outbound calls carry urllib's default User-Agent",
    "no-log-id": "log lines do not carry the trace id",
    "ready-while-stopping": "readiness stays 200 after SIGTERM",
    "liveness-off-on-stop": "liveness turns 503 after SIGTERM",
    "close-at-once": "the listener closes at SIGTERM, with no delay",
    "cut-in-flight": "requests in flight are cut off at SIGTERM",
    "exit-1": "the process exits 1 after a clean shutdown",
    "second-sigterm-hangs": "a second SIGTERM kills the shutdown sequence and leaves the process hanging",
    "wait-for-all": "the shutdown waits for every request, however long it takes",
}

FAULT = os.environ.get("FAULT", "")
if FAULT and FAULT not in FAULTS:
    print(json.dumps({"time": "", "body": f"FAULT={FAULT!r} is not one of {sorted(FAULTS)}"}), file=sys.stderr)
    sys.exit(2)

APP = "conform-python-demo"
USER_AGENT = f"{APP}/1.0.0"
FORWARDED = ["x-request-id", "x-ot-span-context", "traceparent", "tracestate", "x-audit-restriction-levels"]
B3_MULTI = ["x-b3-traceid", "x-b3-spanid", "x-b3-parentspanid", "x-b3-sampled", "x-b3-flags"]
CPR = re.compile(r"(?<!\d)\d{6}-?\d{4}(?!\d)")
HEX_ID = re.compile(r"[0-9a-f]{16}|[0-9a-f]{32}")

_log_lock = threading.Lock()
stopping = threading.Event()
in_flight: set[socket.socket] = set()
in_flight_lock = threading.Lock()


def log(body: str, *, severity: str = "low", kind: str = "event", trace_id: str | None = None, **fields) -> None:
    """One line in the eHealth logging model; CPR numbers masked in every string."""
    line = {
        "time": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "app": APP,
        "body": CPR.sub("xxxxxxxxxx", body),
    }
    if trace_id and FAULT != "no-log-id":
        line["id"] = trace_id
    line.update({"severity": severity, "subject": "service", "type": kind})
    line.update({key: CPR.sub("xxxxxxxxxx", value) if isinstance(value, str) else value
                 for key, value in fields.items()})
    with _log_lock:
        sys.stdout.write(json.dumps(line) + "\n")
        sys.stdout.flush()


def trace_id_of(headers) -> str | None:
    single = headers.get("b3", "")
    candidate = single.split("-")[0] if "-" in single else headers.get("x-b3-traceid", "")
    return candidate if HEX_ID.fullmatch(candidate or "") else None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = APP

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        """The base class logs to stderr in its own format; the access line below replaces it."""

    def _answer(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if stopping.is_set():
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def _handle(self) -> None:
        with in_flight_lock:
            in_flight.add(self.connection)
        started = time.monotonic()
        try:
            status = self._route()
        except (OSError, ValueError):
            status = 499
        finally:
            with in_flight_lock:
                in_flight.discard(self.connection)
        path = self.path if FAULT == "log-query" else self.path.split("?")[0]
        rejected = 400 <= status < 500
        log("request rejected" if rejected else "request", trace_id=trace_id_of(self.headers),
            severity="medium" if rejected else "low",
            kind="alert" if rejected and FAULT != "no-alert" else "event",
            http_method=self.command, uri_path=path, status=status,
            duration=round(time.monotonic() - started, 6))

    do_GET = do_POST = do_PUT = do_DELETE = _handle

    def _route(self) -> int:
        path = self.path.split("?")[0]
        if self.command == "POST":
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
        if path == "/livez":
            alive = FAULT != "liveness-503" and not (FAULT == "liveness-off-on-stop" and stopping.is_set())
            return self._status(200 if alive else 503)
        if path == "/healthz":
            ready = FAULT != "never-ready" and (FAULT == "ready-while-stopping" or not stopping.is_set())
            return self._status(200 if ready else 503)
        if path == "/slow" and self.command == "GET":
            time.sleep(1)
            return self._status(200)
        if path == "/call" and self.command == "GET":
            return self._call()
        self._answer(404, b'{"status":404,"title":"Not Found"}', "application/problem+json")
        return 404

    def _status(self, status: int) -> int:
        self._answer(status, json.dumps({"status": "ok" if status == 200 else "unavailable"}).encode())
        return status

    def _call(self) -> int:
        upstream = os.environ.get("UPSTREAM_URL")
        if not upstream:
            return self._status(503)
        names = FORWARDED + B3_MULTI + ["b3"]
        if FAULT == "drop-b3-multi":
            names = [name for name in names if name not in B3_MULTI]
        if FAULT == "drop-b3-single":
            names.remove("b3")
        if FAULT == "drop-request-id":
            names.remove("x-request-id")
        headers = {name: self.headers[name] for name in names if self.headers.get(name) is not None}
        if FAULT != "default-agent":
            headers["User-Agent"] = USER_AGENT
        request = urllib.request.Request(upstream.rstrip("/") + "/greeting", headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=2) as response:
                response.read()
        except (urllib.error.URLError, OSError) as error:
            log(f"upstream call failed: {type(error).__name__}", severity="high", kind="alert",
                trace_id=trace_id_of(self.headers))
            return self._status(502)
        return self._status(200)


def main() -> int:
    port = os.environ.get("PORT", "8080")
    try:
        delay = float(os.environ.get("SHUTDOWN_DELAY", "1.5s").rstrip("s"))
        grace = float(os.environ.get("SHUTDOWN_GRACE_PERIOD", "10s").rstrip("s"))
        server = ThreadingHTTPServer(("0.0.0.0", int(port)), Handler)
    except ValueError as error:
        log(f"bad configuration: {error}", severity="high", kind="alarm")
        return 2
    server.daemon_threads = True
    signals = []

    def on_sigterm(signum, frame):
        signals.append(signum)
        if len(signals) == 1:
            stopping.set()
            return
        if FAULT == "second-sigterm-hangs":
            raise RuntimeError("interrupted")
        log("second SIGTERM: exiting at once", severity="medium")
        os._exit(143)

    signal.signal(signal.SIGTERM, on_sigterm)
    serving = threading.Thread(target=server.serve_forever, daemon=FAULT != "second-sigterm-hangs")
    serving.start()
    if FAULT == "plain-log":
        print(f"listening on {port}", flush=True)
    log("listening", port=int(port))
    while not stopping.wait(0.1):
        pass
    sigterm = time.monotonic()
    log("SIGTERM: readiness off, still serving", phase="delay")
    if FAULT == "cut-in-flight":
        with in_flight_lock:
            for connection in in_flight:
                connection.shutdown(socket.SHUT_RDWR)
    if FAULT != "close-at-once":
        time.sleep(delay)
    server.shutdown()
    server.server_close()
    deadline = sigterm + grace - 0.5
    while in_flight and (FAULT == "wait-for-all" or time.monotonic() < deadline):
        time.sleep(0.05)
    if in_flight:
        log("requests cut off at the deadline", severity="high", kind="alarm", phase="drain")
        sys.stdout.flush()
        os._exit(1)
    log("stopped", phase="done")
    return 1 if FAULT == "exit-1" else 0


if __name__ == "__main__":
    sys.exit(main())
