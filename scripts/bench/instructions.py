"""Instructions per request, counted by valgrind's callgrind: the same figure on a busy machine as on a quiet one.

Each server runs under callgrind and serves N, then 3N keep-alive `GET /` requests (the kit's with the same B3
headers and User-Agent as the wrk benchmark, every request sampled, JSON logs to a file, spans exported to
the local sink); the difference of the two whole-process totals divided by 2N is the cost of a request,
with startup and shutdown cancelled out. User-space instructions only: the kernel's share (TCP on loopback)
is the same for both servers and is not counted.

    python3 scripts/bench/instructions.py --kit target/release/reference-service --bare .../bare-axum
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from run import HERE, free_port, kit_env

HEADERS = {"X-B3-TraceId": "463ac35c9f6413ad48485a3953bb6124", "X-B3-SpanId": "a2fb4a1d1a96d312",
           "X-B3-Sampled": "1", "User-Agent": "wrk"}


def total_instructions(binary: str, env: dict[str, str], port: int, requests: int, workdir: Path) -> int:
    out = workdir / f"callgrind.{port}"
    server = subprocess.Popen(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", binary], env=env,
                              stdin=subprocess.DEVNULL, stdout=(workdir / "stdout").open("ab"),
                              stderr=(workdir / "valgrind.log").open("ab"))
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                connection.request("GET", "/", headers=HEADERS)
                connection.getresponse().read()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit(f"{binary} did not answer under valgrind; see {workdir}/valgrind.log")
                time.sleep(0.1)
        for _ in range(requests - 1):
            connection.request("GET", "/", headers=HEADERS)
            response = connection.getresponse()
            response.read()
            if response.status != 200:
                raise SystemExit(f"{binary} answered {response.status}")
        connection.close()
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=120)
    summary = (workdir / "valgrind.log").read_text()
    totals = re.findall(r"Collected : (\d+)", summary)
    if not totals:
        raise SystemExit(f"no callgrind total in {workdir}/valgrind.log")
    os.truncate(workdir / "valgrind.log", 0)
    return int(totals[-1])


def per_request(binary: str, env_for_port, requests: int, workdir: Path) -> float:
    counts = []
    for n in (requests, 3 * requests):
        port = free_port()
        counts.append(total_instructions(binary, env_for_port(port), port, n, workdir))
    return (counts[1] - counts[0]) / (2 * requests)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kit", required=True)
    parser.add_argument("--bare", required=True)
    parser.add_argument("--requests", type=int, default=1000, help="N: runs serve N and 3N requests")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="telemed-instructions-") as tmp:
        workdir = Path(tmp)
        sink_port = free_port()
        sink = subprocess.Popen([sys.executable, str(HERE / "sink.py"), str(sink_port)], stdout=subprocess.PIPE,
                                text=True)
        try:
            sink.stdout.readline()  # "sink listening"
            bare = per_request(args.bare, lambda port: {"PATH": os.environ.get("PATH", ""), "PORT": str(port)},
                               args.requests, workdir)
            kit = per_request(args.kit, lambda port: kit_env(port, sink_port), args.requests, workdir)
        finally:
            sink.terminate()
            sink.wait()
    print("| Server | instructions per request | kit / bare |")
    print("|---|---:|---:|")
    print(f"| bare axum | {bare:,.0f} | 1.00 |")
    print(f"| kit (full stack) | {kit:,.0f} | {kit / bare:.2f} |")


if __name__ == "__main__":
    main()
