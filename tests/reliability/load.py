"""A constant-rate HTTP load client that counts every failure by its cause.

Worker threads send a mix of requests at a fixed total rate, in one of two modes:

- `keepalive`: each worker keeps one connection open and reuses it (reconnecting only after a response that
  said `Connection: close`): the pattern of a service mesh's connection pool.
- `newconn`: every request on a new connection, sent with `Connection: close`: the pattern of clients that do
  not pool, and the one that exercises accepting during shutdown.

A request succeeds only with the expected status and body: 200 and the service's name for `GET /`, 200 and the
stored value for `GET /settings/{key}` (a key drawn from `reads`), 200 and a new `ETag` for the `PUT`. Anything else is a failure, counted
by cause (`status 503`, `connection refused`, `closed without response`, `timeout`, `wrong body`, ...); nothing
is retried, so that nothing is hidden. The rate is open-loop per worker: a late request does not make the next
ones come faster, and falling behind shows as a lower achieved rate rather than a burst.

Each worker updates its own key with `If-Match` on the `ETag` of its previous write, so that concurrent writers
never conflict; after a failed write the worker reads the current tag from the store itself.
"""

from __future__ import annotations

import http.client
import json
import random
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable



@dataclass(frozen=True)
class Mix:
    """Relative weights of the request kinds."""

    root: float = 0.45
    read: float = 0.45
    write: float = 0.10


@dataclass
class Tally:
    """What a load run saw. Thread-safe through `lock`."""

    ok: Counter = field(default_factory=Counter)
    failures: Counter = field(default_factory=Counter)
    served_by: Counter = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    failure_times: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def served(self) -> int:
        return sum(self.ok.values())

    @property
    def failed(self) -> int:
        return sum(self.failures.values())

    def percentile(self, p: float) -> float:
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


class LoadClient:
    """Sends `rate` requests per second in total from `workers` threads until `stop()`."""

    def __init__(self, port: int, mode: str, rate: float, workers: int, mix: Mix, reads: dict[str, bytes],
                 write_etags: dict[str, str], recover_etag: Callable[[str], str | None], token: str,
                 timeout: float = 5.0):
        if mode not in ("keepalive", "newconn"):
            raise ValueError(f"mode {mode!r}: expected keepalive or newconn")
        if mix.write > 0 and len(write_etags) < workers:
            raise ValueError("every worker needs its own write key")
        self.port = port
        self.auth = {"Authorization": f"Bearer {token}"}
        self.mode = mode
        self.rate = rate
        self.workers = workers
        self.mix = mix
        self.reads = reads
        self.read_keys = list(reads)
        self.write_keys = list(write_etags)
        self.etags = dict(write_etags)
        self.recover_etag = recover_etag
        self.timeout = timeout
        self.tally = Tally()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.started_at = 0.0
        self.stopped_at = 0.0

    def start(self) -> None:
        self.started_at = time.monotonic()
        for index in range(self.workers):
            thread = threading.Thread(target=self._work, args=(index,), name=f"load-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> Tally:
        self._stop.set()
        for thread in self._threads:
            thread.join()
        self.stopped_at = time.monotonic()
        return self.tally

    @property
    def elapsed(self) -> float:
        return (self.stopped_at or time.monotonic()) - self.started_at

    def _connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)

    def _work(self, index: int) -> None:
        rng = random.Random(index)
        interval = self.workers / self.rate
        write_key = self.write_keys[index] if self.mix.write > 0 else None
        kinds = ["root", "read", "write"]
        weights = [self.mix.root, self.mix.read, self.mix.write]
        conn = self._connect() if self.mode == "keepalive" else None
        # Spread the workers' first requests over one interval so that they do not arrive in lockstep.
        next_at = time.monotonic() + interval * index / self.workers
        while not self._stop.is_set():
            delay = next_at - time.monotonic()
            if delay > 0:
                if self._stop.wait(delay):
                    break
            next_at = max(next_at + interval, time.monotonic())
            kind = rng.choices(kinds, weights)[0]
            if self.mode == "newconn":
                conn = self._connect()
            started = time.monotonic()
            cause = self._one(conn, kind, write_key, rng)
            elapsed = time.monotonic() - started
            if self.mode == "newconn" or cause is not None:
                conn.close()
                if self.mode == "keepalive":
                    conn = self._connect()
            with self.tally.lock:
                if cause is None:
                    self.tally.ok[kind] += 1
                    self.tally.latencies.append(elapsed)
                else:
                    self.tally.failures[f"{kind}: {cause}"] += 1
                    self.tally.failure_times.append(started - self.started_at)
            if cause is not None and kind == "write" and write_key is not None:
                recovered = self.recover_etag(write_key)
                if recovered is not None:
                    self.etags[write_key] = recovered
        if conn is not None:
            conn.close()

    def _one(self, conn: http.client.HTTPConnection, kind: str, write_key: str | None,
             rng: random.Random) -> str | None:
        """Sends one request; None on success, else the cause of the failure."""
        headers = dict(self.auth)
        if self.mode == "newconn":
            headers["Connection"] = "close"
        body = None
        read_key = rng.choice(self.read_keys) if kind == "read" else None
        if kind == "root":
            method, path = "GET", "/"
        elif kind == "read":
            method, path = "GET", f"/settings/{read_key}"
        else:
            method, path = "PUT", f"/settings/{write_key}"
            headers["Content-Type"] = "text/plain"
            headers["If-Match"] = self.etags[write_key]
            body = f"written at {time.time():.6f}".encode()
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            payload = response.read()
        except ConnectionRefusedError:
            return "connection refused"
        except ConnectionResetError:
            return "connection reset"
        except BrokenPipeError:
            return "broken pipe"
        except http.client.RemoteDisconnected:
            return "closed without response"
        except (socket.timeout, TimeoutError):
            return "timeout"
        except (OSError, http.client.HTTPException) as error:
            return f"{type(error).__name__}"
        served_by = response.getheader("X-Served-By")
        if served_by:
            with self.tally.lock:
                self.tally.served_by[served_by] += 1
        if response.status != 200:
            return f"status {response.status}"
        if kind == "root":
            try:
                if "name" not in json.loads(payload):
                    return "wrong body"
            except ValueError:
                return "wrong body"
        elif kind == "read":
            if payload != self.reads[read_key]:
                return "wrong body"
        else:
            etag = response.getheader("ETag")
            if not etag:
                return "no ETag"
            self.etags[write_key] = etag
        return None
