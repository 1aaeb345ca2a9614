"""Real processes for the reliability runs: the key-value store and token issuer stand-ins, reference-service
instances and HAProxy.

Everything here starts a real binary on 127.0.0.1 and talks to it over real sockets; nothing is mocked. Python's
standard library only, so that the scripts run on a bare Debian machine without a virtualenv.

Readiness is found by polling `/healthz` every 50 ms, as a kubelet's probe would (only faster): there is no other
signal a process gives that it is ready, which is exactly the contract under test.
"""

from __future__ import annotations

import csv
import http.client
import io
import json
import os
import signal
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

# The bearer token of the harness's own calls to the store stand-in, which accepts any token except `forbidden`.
# Requests to the service carry a real token from `Issuer`: the service verifies it.
STORE_TOKEN = "reliability"
# The `{application}` segment of the stand-in's paths, set explicitly so that the harness can read the store
# directly (to recover an ETag after a failed write) without knowing the service's name.
APPLICATION = "reliability"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def request(port: int, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
            timeout: float = 2.0) -> tuple[int, dict, bytes] | None:
    """One request on a new connection; None when no response came."""
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        finally:
            conn.close()
    except (OSError, http.client.HTTPException):
        return None


def wait_until(predicate, timeout: float, what: str, interval: float = 0.05) -> float:
    """Polls `predicate` until it is true; returns the seconds it took. Raises TimeoutError."""
    started = time.monotonic()
    while True:
        if predicate():
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


class Process:
    """A child process with its output in a log file."""

    def __init__(self, argv: list[str], env: dict[str, str], log_path: Path, label: str):
        self.label = label
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(argv, env={**os.environ, **env}, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        self.started_at = time.monotonic()
        self.sigterm_at: float | None = None
        self.exited_at: float | None = None
        # A thread waits on the process so that the exit instant is recorded when it happens, not when the
        # harness next looks.
        self._exited = threading.Event()
        threading.Thread(target=self._watch, name=f"wait-{label}", daemon=True).start()

    def _watch(self) -> None:
        self.proc.wait()
        self.exited_at = time.monotonic()
        self._exited.set()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def terminate(self) -> None:
        """Sends SIGTERM, as the kubelet does."""
        self.sigterm_at = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)

    def wait_exit(self, timeout: float) -> int | None:
        """The exit code, or None (and SIGKILL, as the kubelet would) when it did not exit in time."""
        code = None
        if self._exited.wait(timeout):
            code = self.proc.returncode
        else:
            self.proc.kill()
            self._exited.wait()
        self._log.close()
        return code

    def stop(self) -> None:
        """Ends the process if it still runs (cleanup; not part of any measurement)."""
        if self.proc.poll() is None:
            # A second SIGTERM would make a kit service exit at once: send one only if none was sent.
            if self.sigterm_at is None:
                self.terminate()
            try:
                self.proc.wait(timeout=12)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if not self._log.closed:
            self._log.close()


class StandIn(Process):
    """The key-value store stand-in (`kvstore-standin`)."""

    def __init__(self, binary: Path, run_dir: Path):
        self.port = free_port()
        super().__init__([str(binary)], {"PORT": str(self.port), "LOG_FORMAT": "json"},
                         run_dir / "kvstore-standin.log", "kvstore-standin")
        wait_until(lambda: request(self.port, "GET", "/healthz") is not None and
                   request(self.port, "GET", "/healthz")[0] == 200, 30, "the stand-in to be ready")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def create(self, key: str, value: bytes) -> str:
        """Creates `key` as text directly in the store; returns its ETag."""
        answer = request(self.port, "POST", f"/properties/{APPLICATION}/{key}", body=value,
                         headers={"Authorization": f"Bearer {STORE_TOKEN}", "Content-Type": "text/plain"})
        if answer is None or answer[0] != 201:
            raise RuntimeError(f"could not create {key} in the stand-in: {answer and answer[0]}")
        return answer[1]["etag"]

    def etag(self, key: str) -> str | None:
        """The stored ETag of `key`, read from the store itself (no service cache in between)."""
        answer = request(self.port, "GET", f"/properties/{APPLICATION}/{key}",
                         headers={"Authorization": f"Bearer {STORE_TOKEN}"})
        if answer is None or answer[0] != 200:
            return None
        return answer[1].get("etag")


class Issuer(Process):
    """The token issuer stand-in (`issuer-standin`), the binary beside the key-value store stand-in's."""

    REALM = "ehealth"

    def __init__(self, standin_binary: Path, run_dir: Path):
        self.port = free_port()
        binary = standin_binary.parent / "issuer-standin"
        if not binary.is_file():
            raise FileNotFoundError(f"{binary} is missing: build it with `cargo build -p issuer-standin`")
        super().__init__([str(binary)], {"PORT": str(self.port), "LOG_FORMAT": "json",
                                         "ISSUER_BASE_URL": f"http://127.0.0.1:{self.port}"},
                         run_dir / "issuer-standin.log", "issuer-standin")
        wait_until(lambda: (request(self.port, "GET", "/healthz") or (0,))[0] == 200, 30, "the issuer to be ready")
        # One token for the whole run, valid for a day: a run never outlives it, and a reused token is what a
        # client of the platform sends.
        answer = request(self.port, "POST", f"/auth/realms/{self.REALM}/protocol/openid-connect/token",
                         body=b"grant_type=password&username=practitioner&expires_in=86400",
                         headers={"Content-Type": "application/x-www-form-urlencoded"})
        if answer is None or answer[0] != 200:
            raise RuntimeError(f"no token from the issuer stand-in: {answer}")
        self.token = json.loads(answer[2])["access_token"]

    @property
    def url(self) -> str:
        """What AUTH_ISSUER names."""
        return f"http://127.0.0.1:{self.port}/auth/realms/{self.REALM}"


class Instance(Process):
    """One reference-service instance (a pod, in Kubernetes terms) on its own port."""

    def __init__(self, binary: Path, version: str, kvstore_url: str, issuer: Issuer, run_dir: Path, name: str,
                 extra_env: dict[str, str]):
        self.port = free_port()
        self.version = version
        env = {
            "PORT": str(self.port),
            "KVSTORE_URL": kvstore_url,
            "AUTH_ISSUER": issuer.url,
            "KVSTORE_APPLICATION": APPLICATION,
            "LOG_FORMAT": "json",
            **extra_env,
        }
        super().__init__([str(binary)], env, run_dir / f"{name}.log", name)

    def is_ready(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.label} exited with {self.proc.returncode} before becoming ready; "
                               f"see {self.log_path}")
        answer = request(self.port, "GET", "/healthz", timeout=1.0)
        return answer is not None and answer[0] == 200

    def wait_ready(self, timeout: float = 30) -> float:
        return wait_until(self.is_ready, timeout, f"{self.label} to be ready")


@dataclass(frozen=True)
class CheckSettings:
    """HAProxy's active health check, in the terms of a Kubernetes readiness probe.

    Defaults to the chart's readinessProbe (chart/values.yaml `probes.readiness`): every 5 s, timeout 2 s, out of
    rotation after 2 failures, back after 1 success (Kubernetes' fixed successThreshold for readiness).
    """

    inter: float = 5.0
    timeout: float = 2.0
    fall: int = 2
    rise: int = 1

    def describe(self) -> str:
        return f"inter {self.inter:g}s timeout {self.timeout:g}s fall {self.fall} rise {self.rise}"


class Haproxy(Process):
    """HAProxy in front of a set of server slots, driven through its runtime API.

    The servers come from a `server-template` of `slots` entries that start in maintenance; an instance is put in
    a slot with `set server ... addr` and `state ready` (an endpoint added), taken out with `state maint` (an
    endpoint removed). Every slot is actively health-checked on `/healthz`.

    `retries 0` and no `option redispatch`: a request that fails on its server is answered with the failure, never
    replayed elsewhere, so that the load client sees every failure the service causes.
    """

    BACKEND = "app"

    def __init__(self, run_dir: Path, slots: int, check: CheckSettings):
        self.port = free_port()
        self.slots = slots
        # Not under run_dir: a Unix socket's path may be at most 97 bytes for HAProxy, and run_dir lies wherever
        # the checkout does (a `mktemp -d` clone's run directories already exceed it).
        self.socket_path = Path(tempfile.mkdtemp(prefix="haproxy-")) / "api.sock"
        config = run_dir / "haproxy.cfg"
        config.write_text(self.config(check))
        subprocess.run(["haproxy", "-c", "-q", "-f", str(config)], check=True)
        super().__init__(["haproxy", "-db", "-f", str(config)], {}, run_dir / "haproxy.log", "haproxy")
        wait_until(self.socket_path.exists, 10, "HAProxy's runtime API socket")

    def config(self, check: CheckSettings) -> str:
        ms = lambda seconds: f"{int(seconds * 1000)}ms"  # noqa: E731
        return f"""\
global
    log stdout format raw local0 info
    stats socket {self.socket_path} mode 600 level admin
    nbthread 1
    maxconn 4096

defaults
    mode http
    log global
    # status, termination state, server, method and path of every request, for the failure breakdown.
    log-format "%ST %tsc %s %HM %HP"
    timeout connect 2s
    timeout client 30s
    timeout server 10s
    timeout check {ms(check.timeout)}
    # A failed request is the client's failure: nothing is retried or sent to another server.
    retries 0
    no option redispatch

frontend web
    bind 127.0.0.1:{self.port}
    default_backend {self.BACKEND}

backend {self.BACKEND}
    balance roundrobin
    option httpchk GET /healthz
    http-check expect status 200
    http-response set-header X-Served-By %s/%sp
    default-server check inter {ms(check.inter)} fastinter {ms(check.inter)} downinter {ms(check.inter)} fall {check.fall} rise {check.rise}
    server-template s 1-{self.slots} 127.0.0.1:1 disabled
"""

    def command(self, line: str) -> str:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5)
            sock.connect(str(self.socket_path))
            sock.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def add(self, slot: str, port: int) -> None:
        """Points `slot` at 127.0.0.1:`port` and takes it out of maintenance: the endpoint is added."""
        # The runtime API answers in prose, success and failure alike; the resulting state is what counts.
        answer = self.command(f"set server {self.BACKEND}/{slot} addr 127.0.0.1 port {port}")
        answer += self.command(f"set server {self.BACKEND}/{slot} state ready")
        row = self.stats()[slot]
        if row["addr"] != f"127.0.0.1:{port}" or row["status"].startswith("MAINT"):
            raise RuntimeError(f"HAProxy did not take {slot} = 127.0.0.1:{port}: {row['addr']} {row['status']}; "
                               f"it said: {answer.strip()}")

    def remove(self, slot: str) -> None:
        """Puts `slot` in maintenance: no new request goes there; requests already sent finish."""
        answer = self.command(f"set server {self.BACKEND}/{slot} state maint")
        if not self.status(slot).startswith("MAINT"):
            raise RuntimeError(f"HAProxy did not put {slot} in maintenance: {answer.strip()}")

    def stats(self) -> dict[str, dict[str, str]]:
        """`show stat` of the backend's servers, by server name."""
        text = self.command("show stat").lstrip("# ")
        rows = csv.DictReader(io.StringIO(text))
        return {row["svname"]: row for row in rows
                if row["pxname"] == self.BACKEND and row["svname"] not in ("BACKEND", "FRONTEND")}

    def status(self, slot: str) -> str:
        return self.stats()[slot]["status"]

    def wait_up(self, slot: str, timeout: float = 30) -> float:
        return wait_until(lambda: self.status(slot).startswith("UP"), timeout, f"HAProxy to see {slot} UP")

    def failure_lines(self) -> list[str]:
        """HAProxy's log lines of requests answered with anything but 200 or 201 (health checks excluded)."""
        lines = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            parts = line.split()
            if len(parts) >= 5 and parts[0].isdigit() and parts[0] not in ("200", "201"):
                lines.append(line)
        return lines
