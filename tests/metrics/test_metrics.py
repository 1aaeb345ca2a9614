"""GET /metrics of the real binaries, checked by promtool and by the Prometheus Python client's parser."""

from __future__ import annotations

import http.client
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import tomllib

import pytest
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import access_tokens  # noqa: E402 (tests/ is on the path only from here)

TARGET = Path(os.environ.get("TARGET_DIR", Path(__file__).resolve().parents[2] / "target")) / "debug"


def workspace_version() -> str:
    return tomllib.loads((Path(__file__).resolve().parents[2] / "Cargo.toml").read_text())["workspace"]["package"]["version"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Process:
    """A binary with its JSON stdout lines collected on a thread."""

    def __init__(self, name: str, env: dict[str, str]):
        self.port = int(env.get("PORT") or free_port())
        self.lines: queue.Queue[dict] = queue.Queue()
        self.terminated = False
        self.proc = subprocess.Popen(
            [str(TARGET / name)],
            env={**env, "PORT": str(self.port)},
            stdout=subprocess.PIPE,
            text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()
        self.wait_for(lambda line: line.get("body") == "listening")

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            try:
                self.lines.put(json.loads(raw))
            except json.JSONDecodeError:
                continue

    def wait_for(self, matches, timeout: float = 20.0) -> dict:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            if matches(line):
                return line
        raise AssertionError("expected log line did not appear")

    def terminate(self) -> None:
        if not self.terminated:
            self.terminated = True
            self.proc.send_signal(signal.SIGTERM)

    def stop(self) -> int:
        """SIGTERM (once: a second one exits at once) and the exit code."""
        if self.proc.poll() is None:
            self.terminate()
        return self.proc.wait(timeout=15)


def request(port: int, method: str, path: str, headers: dict[str, str] | None = None, body: bytes | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request(method, path, body=body, headers=headers or {})
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, response.getheader("Content-Type"), data.decode()


def scrape(port: int) -> str:
    status, content_type, text = request(port, "GET", "/metrics")
    assert status == 200
    assert content_type.startswith("text/plain; version=0.0.4")
    return text


def promtool_check(text: str) -> None:
    result = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def samples(text: str) -> dict[tuple[str, tuple], float]:
    """Every sample, keyed by name and sorted labels, through the real Prometheus text parser."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(found, name: str, **labels) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def stack():
    standin = Process("kvstore-standin", {"PORT": str(free_port())})
    jwks = access_tokens.JwksServer()
    service = Process("reference-service", {"KVSTORE_URL": f"http://127.0.0.1:{standin.port}",
                                            **access_tokens.service_env(jwks)})
    # Tokens can be checked once the keys are in (503 before).
    service.wait_for(access_tokens.keys_loaded)
    yield service, standin
    assert service.stop() == 0
    assert standin.stop() == 0
    jwks.close()


def test_metrics_pass_promtool_and_move_with_requests_and_cache_use(stack):
    service, _ = stack
    bearer = {"Authorization": f"Bearer {access_tokens.token()}"}
    before = scrape(service.port)
    promtool_check(before)
    assert request(service.port, "PUT", "/settings/colour", {**bearer, "Content-Type": "text/plain"}, b"blue")[0] == 201
    for _ in range(3):
        assert request(service.port, "GET", "/settings/colour", bearer)[0] == 200
    assert request(service.port, "GET", "/", {})[0] == 200

    text = scrape(service.port)
    promtool_check(text)
    found = samples(text)
    route = {"method": "GET", "route": "/settings/{key}"}
    assert value(found, "http_server_requests_total", status_class="2xx", **route) == 3
    assert value(found, "http_server_requests_total", method="PUT", route="/settings/{key}", status_class="2xx") == 1
    assert value(found, "http_server_request_duration_seconds_count", **route) == 3
    assert value(found, "http_server_requests_in_flight", route="/settings/{key}") == 0
    assert value(found, "cache_hits_total", cache="settings") == 2, "first GET loads, the next two hit"
    assert value(found, "cache_loads_total", cache="settings") == 1
    assert value(found, "http_client_requests_total", host="127.0.0.1", status_class="2xx") >= 2
    assert value(found, "process_resident_memory_bytes") > 0
    assert value(found, "process_open_fds") > 0
    build_info = {labels: sample for (name, labels), sample in found.items() if name == "build_info"}
    revision = os.environ.get("GIT_REVISION", "unknown")
    assert build_info == {(("revision", revision), ("version", workspace_version())): 1.0}, build_info
    assert not any("/metrics" in str(labels) or "healthz" in str(labels) for _, labels in found), (
        "probes and scrapes are not counted"
    )


def test_label_cardinality_stays_bounded_with_many_distinct_raw_paths(stack):
    service, _ = stack
    bearer = {"Authorization": f"Bearer {access_tokens.token()}"}
    for i in range(300):
        request(service.port, "GET", f"/settings/key-{i}", bearer)
        request(service.port, "GET", f"/no/such/path/{i}/0101901234")
    found = samples(scrape(service.port))
    series = {labels for name, labels in found if name == "http_server_requests_total"}
    routes = {dict(labels)["route"] for labels in series}
    assert routes <= {"/settings/{key}", "unmatched", "/"}, routes
    assert len(series) <= 6, series
    assert "0101901234" not in scrape(service.port)


def send_in_background(port: int, path: str) -> socket.socket:
    """Sends `GET path` and leaves the answer unread: the request stays in flight on the service's side."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: test\r\n\r\n".encode())
    return sock


def test_shutdown_phases_are_measured_not_planned():
    """The runtime (the testbed has one worker) is blocked across the planned end of the 200 ms delay, so the
    drain starts late: the delay metric must be what happened, as the service's own drain line says, not the
    configured 200 ms.

    The grace period leaves the 2 s hook room to finish: it starts when the blocked drain ends, about 1 s in, and
    its deadline is the grace period less 1 s (4 s left it a few milliseconds on a loaded machine)."""
    metrics_port = free_port()
    testbed = Process("kit-testbed", {"METRICS_PORT": str(metrics_port), "SHUTDOWN_DELAY": "200ms",
                                      "SHUTDOWN_GRACE_PERIOD": "6s", "TESTBED_HOOK_DURATION": "2s"})
    blocking = None
    try:
        assert request(testbed.port, "GET", "/slow?ms=1")[0] == 200
        found = samples(scrape(metrics_port))
        assert value(found, "http_server_requests_total", method="GET", route="/slow", status_class="2xx") == 1
        blocking = send_in_background(testbed.port, "/block?ms=1000")
        testbed.wait_for(lambda line: line.get("body") == "blocking request started")
        testbed.terminate()
        drain = testbed.wait_for(lambda line: line.get("phase") == "drain")
        testbed.wait_for(lambda line: line.get("phase") == "hooks")
        # The hook runs for 2 s: the metrics port, which serves until the process exits, shows the phases so far.
        text = scrape(metrics_port)
        promtool_check(text)
        found = samples(text)
        delay = value(found, "shutdown_phase_duration_seconds", phase="delay")
        assert drain["elapsed_ms"] >= 500, f"the runtime was not blocked past the delay: {drain}"
        # The drain line's elapsed_ms is read a moment after the metric's instant, and cut to whole milliseconds.
        assert drain["elapsed_ms"] / 1000 - 0.005 <= delay <= drain["elapsed_ms"] / 1000 + 0.001, (delay, drain)
        assert ("shutdown_phase_duration_seconds", (("phase", "drain"),)) in found
        assert value(found, "shutdown_requests_cut_off") == 0, "the blocking request finished in the drain"
    finally:
        if blocking is not None:
            blocking.close()
        assert testbed.stop() == 0


def test_requests_cut_off_are_reported_on_the_metrics_port():
    """A request that never finishes is cut off at the drain deadline; a scrape during the hooks sees it."""
    metrics_port = free_port()
    testbed = Process("kit-testbed", {"METRICS_PORT": str(metrics_port), "SHUTDOWN_DELAY": "200ms",
                                      "SHUTDOWN_GRACE_PERIOD": "4s", "TESTBED_HOOK_DURATION": "2s"})
    hanging = send_in_background(testbed.port, "/hang")
    try:
        testbed.wait_for(lambda line: line.get("body") == "hanging request started")
        assert value(samples(scrape(metrics_port)), "shutdown_requests_cut_off") == 0
        testbed.terminate()
        hooks = testbed.wait_for(lambda line: line.get("phase") == "hooks")
        assert hooks["drained"] is False, hooks
        # The hooks run until their deadline, 0.5 s after the drain deadline: the scrape falls inside.
        found = samples(scrape(metrics_port))
        assert value(found, "shutdown_requests_cut_off") == 1
    finally:
        hanging.close()
        assert testbed.stop() == 1, "a request cut off ends the process with exit code 1"
