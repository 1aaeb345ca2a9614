"""Helpers shared by tests/chart and tests/image: the chart renderer, the real service binary, HTTP probes.

The tests run inside a network namespace of their own (scripts/test-chart.sh and scripts/test-image.sh start
them with `unshare -n`), so the service can listen on its real default port, 8080, without meeting anything
else on the machine.
"""

from __future__ import annotations

import http.client
import importlib.util
import json
import queue
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

import access_tokens  # noqa: E402,F401 (tests/ is on the path only from here; re-exported for the suites)
CHART = ROOT / "chart"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def load_render_chart():
    """scripts/render-chart.py as a module (its file name has a dash)."""
    spec = importlib.util.spec_from_file_location("render_chart", ROOT / "scripts" / "render-chart.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def latest_release() -> tuple[str, str]:
    """(version, commit) of the latest release in CHANGELOG.md (scripts/release/latest.py); fails when the
    changelog names none or this clone lacks its commit."""
    spec = importlib.util.spec_from_file_location("release_latest", ROOT / "scripts" / "release" / "latest.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    found = module.releases(module.CHANGELOG.read_text())
    module.check_commits(found[:1])
    return found[0]


def in_private_netns() -> bool:
    """True in a network namespace of loopback alone, as `unshare --net` makes (the machine's own has more)."""
    interfaces = {line.split(":")[0].strip() for line in Path("/proc/net/dev").read_text().splitlines()[2:]}
    return interfaces == {"lo"}


def log_fields(line: str) -> dict[str, Any] | None:
    """The message and fields of one log line, as a flat dict with the message under "body".

    Reads the platform's JSON lines (fields at the top level or nested one level, e.g. under "fields") and, so
    that the tests also work with the human format, `message key=value` lines. None for other lines.
    """
    line = ANSI.sub("", line).strip()
    if line.startswith("{"):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            return None
        flat: dict[str, Any] = {}
        for key, value in record.items():
            if isinstance(value, dict):
                flat.update(value)
        flat.update({k: v for k, v in record.items() if not isinstance(v, dict)})
        if "body" not in flat:
            flat["body"] = flat.get("message", flat.get("msg"))
        return flat
    first_field = re.search(r"\s\w+=", line)
    head = line[: first_field.start()] if first_field else line
    fields: dict[str, Any] = {"body": head.rsplit(": ", 1)[-1].strip()}
    if first_field:
        for key, value in re.findall(r'(\w+)=("[^"]*"|\S+)', line[first_field.start():]):
            fields[key] = value.strip('"')
    return fields


class KitProcess:
    """A service binary started for real, its stdout read line by line in the background."""

    def __init__(self, argv: list[str], env: dict[str, str]):
        self.process = subprocess.Popen(
            argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._queue.put(line)
        self._queue.put(None)

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 20.0) -> dict[str, Any]:
        """The fields of the first log line matching `predicate`; fails if the process ends or time runs out."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no matching log line within {timeout}s; output so far:\n{''.join(self.lines)}")
            try:
                line = self._queue.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(
                    f"process exited ({self.process.wait()}) before the expected log line:\n{''.join(self.lines)}"
                )
            self.lines.append(line)
            fields = log_fields(line)
            if fields is not None and predicate(fields):
                return fields

    def stop(self, timeout: float) -> int:
        """SIGTERM, as the kubelet sends it; returns the exit code (the process is killed after `timeout`)."""
        if self.process.poll() is None:
            self.process.terminate()
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"still running {timeout}s after SIGTERM:\n{''.join(self.lines)}")

    def output(self) -> str:
        """Everything read so far, after draining what the reader thread has queued."""
        while True:
            try:
                line = self._queue.get_nowait()
            except queue.Empty:
                return "".join(self.lines)
            if line is not None:
                self.lines.append(line)


def listening(fields: dict[str, Any]) -> bool:
    return fields.get("body") == "listening"


def http_get(port: int, path: str, host: str = "127.0.0.1", timeout: float = 5.0) -> tuple[int, dict[str, str], bytes]:
    """One GET on a new connection: (status, lower-cased headers, body)."""
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def wait_until(condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.05) -> None:
    """Polls an observable state (a probe answer, a socket) until it holds; fails after `timeout`."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def probe_status(port: int, path: str) -> int | None:
    """The status of GET path, or None while nothing answers."""
    try:
        return http_get(port, path, timeout=2.0)[0]
    except OSError:
        return None


def env_from_render(objects: list[dict[str, Any]]) -> dict[str, str]:
    """The container environment a render produces: its ConfigMap (envFrom) plus literal `env` entries."""
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        name = source["configMapRef"]["name"]
        config_map = next(o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == name)
        env.update(config_map["data"])
    for entry in container.get("env", []):
        if "value" in entry:
            env[entry["name"]] = entry["value"]
    return env
