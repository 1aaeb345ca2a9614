"""Soak: minutes of mixed load against one reference-service instance, watching for leaks.

One instance runs against the key-value store stand-in. Two load clients run at once, half the rate each: one
with keep-alive connections and one with a new connection per request (so that connection setup and teardown are
exercised as much as request handling). The mix is `GET /`, `GET /settings/{key}` over `--keys` keys (each cached
for 30 s, so the cache keeps loading, expiring and reloading entries) and `PUT` updates.

Every second the sampler records, for the service's PID:

- RSS (`VmRSS` of /proc/PID/status) and OS threads (`Threads`);
- open file descriptors (the entries of /proc/PID/fd), sampled before the metrics scrape so that the scrape's
  own connection is not counted;
- requests in flight (the sum of the `http_server_requests_in_flight` gauge of GET /metrics) and `cache_entries`.
  Tokio does not expose its task count on a stable API; the kit spawns one task per connection and per request
  on a connection, so tasks that leak show up as requests or connections that never finish: in flight, and
  open file descriptors;
- CPU (utime + stime of /proc/PID/stat), for information.

After a warm-up (one cache TTL, 30 s, by default: the allocator's arenas and the cache fill), the mean of the
first minute is compared with the mean of the last minute. The run passes when no request failed and each figure
stays flat within its allowance: RSS at most 5 % + 1 MiB above, file descriptors at most 2 above, threads at most
1 above, requests in flight at most 1 above. The summary is printed as a Markdown table for
docs/performance.md ("Soak").
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from harness import Instance, Issuer, StandIn, request
from load import LoadClient, Mix

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Sample:
    t: float
    rss_kib: int
    threads: int
    fds: int
    in_flight: float
    cache_entries: float
    cpu_seconds: float


def proc_status(pid: int) -> tuple[int, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        fields[name] = value.split()
    return int(fields["VmRSS"][0]), int(fields["Threads"][0])


def cpu_seconds(pid: int) -> float:
    # The command name (field 2) may hold spaces; the fields after its closing parenthesis are fixed.
    after = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(after[11]) + int(after[12])) / CLOCK_TICKS


def scrape(port: int) -> tuple[float, float]:
    """The summed `http_server_requests_in_flight` and `cache_entries` gauges; NaN when absent."""
    answer = request(port, "GET", "/metrics", timeout=2.0)
    if answer is None or answer[0] != 200:
        return float("nan"), float("nan")
    in_flight = cache = 0.0
    seen_in_flight = seen_cache = False
    for line in answer[2].decode().splitlines():
        if line.startswith("http_server_requests_in_flight"):
            in_flight += float(line.rsplit(" ", 1)[1])
            seen_in_flight = True
        elif line.startswith("cache_entries"):
            cache += float(line.rsplit(" ", 1)[1])
            seen_cache = True
    return (in_flight if seen_in_flight else float("nan")), (cache if seen_cache else float("nan"))


class Sampler:
    """Samples the process once a second on a thread until stopped."""

    def __init__(self, instance: Instance, started: float):
        self.instance = instance
        self.started = started
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> list[Sample]:
        self._stop.set()
        self._thread.join()
        return self.samples

    def _run(self) -> None:
        pid = self.instance.pid
        next_at = time.monotonic()
        while not self._stop.is_set():
            rss, threads = proc_status(pid)
            fds = len(os.listdir(f"/proc/{pid}/fd"))
            cpu = cpu_seconds(pid)
            in_flight, cache = scrape(self.instance.port)
            self.samples.append(Sample(time.monotonic() - self.started, rss, threads, fds, in_flight, cache, cpu))
            next_at += 1.0
            self._stop.wait(max(0.0, next_at - time.monotonic()))


@dataclass(frozen=True)
class Allowance:
    """How much the last minute's mean may exceed the first minute's: `relative` of it plus `absolute`."""

    relative: float
    absolute: float

    def limit(self, first: float) -> float:
        return first * (1 + self.relative) + self.absolute


FIGURES = {
    # name: (unit, how to read it from a sample, allowance)
    "RSS": ("MiB", lambda s: s.rss_kib / 1024, Allowance(0.05, 1.0)),
    "open file descriptors": ("", lambda s: s.fds, Allowance(0.0, 2.0)),
    "OS threads": ("", lambda s: s.threads, Allowance(0.0, 1.0)),
    "requests in flight": ("", lambda s: s.in_flight, Allowance(0.0, 1.0)),
    "cache entries": ("", lambda s: s.cache_entries, None),
}


def window(samples: list[Sample], start: float, end: float) -> list[Sample]:
    return [s for s in samples if start <= s.t < end]


def evaluate(samples: list[Sample], warmup: float, minute: float, duration: float) -> tuple[list[dict], list[str]]:
    first = window(samples, warmup, warmup + minute)
    last = window(samples, duration - minute, duration + 1)
    rows, problems = [], []
    for name, (unit, read, allowance) in FIGURES.items():
        values = [read(s) for s in samples if s.t >= warmup]
        first_mean = statistics.fmean(read(s) for s in first)
        last_mean = statistics.fmean(read(s) for s in last)
        row = {"figure": name, "unit": unit, "first": first_mean, "last": last_mean, "min": min(values),
               "max": max(values)}
        if allowance is not None:
            row["limit"] = allowance.limit(first_mean)
            row["flat"] = last_mean <= row["limit"]
            if not row["flat"]:
                problems.append(f"{name} grew: {first_mean:.2f} -> {last_mean:.2f} (limit {row['limit']:.2f})")
        rows.append(row)
    return rows, problems


def markdown(rows: list[dict], warmup: float, minute: float, duration: float) -> str:
    head = (f"| figure | mean {warmup:.0f}-{warmup + minute:.0f} s | mean {duration - minute:.0f}-{duration:.0f} s "
            f"| min | max | allowed | flat |\n|---|---|---|---|---|---|---|\n")
    body = ""
    for r in rows:
        unit = f" {r['unit']}" if r["unit"] else ""
        limit = f"<= {r['limit']:.2f}{unit}" if "limit" in r else "(information)"
        flat = ("yes" if r["flat"] else "**no**") if "flat" in r else ""
        body += (f"| {r['figure']} | {r['first']:.2f}{unit} | {r['last']:.2f}{unit} | {r['min']:.2f} | "
                 f"{r['max']:.2f} | {limit} | {flat} |\n")
    return head + body


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--service", type=Path, required=True)
    parser.add_argument("--standin", type=Path, required=True)
    parser.add_argument("--duration", type=float, default=300, help="seconds of load (300)")
    parser.add_argument("--warmup", type=float, default=30, help="seconds left out before the first window (30)")
    parser.add_argument("--minute", type=float, default=60, help="length of the compared windows (60)")
    parser.add_argument("--rate", type=float, default=200, help="requests per second in total (200)")
    parser.add_argument("--workers", type=int, default=8, help="load threads per client (8)")
    parser.add_argument("--keys", type=int, default=1000, help="distinct keys read (1000)")
    parser.add_argument("--run-dir", type=Path, required=True)
    args = parser.parse_args()
    if args.duration < args.warmup + 2 * args.minute:
        parser.error("--duration must cover the warm-up and two windows")
    args.run_dir.mkdir(parents=True, exist_ok=True)

    standin = StandIn(args.standin, args.run_dir)
    issuer = None
    instance = None
    try:
        issuer = Issuer(args.standin, args.run_dir)
        reads = {f"soak-{n}": f"value {n}".encode() for n in range(args.keys)}
        for key, value in reads.items():
            standin.create(key, value)
        instance = Instance(args.service, "current", standin.url, issuer, args.run_dir, "reference-service", {})
        instance.wait_ready()
        clients = []
        for mode in ("keepalive", "newconn"):
            etags = {f"soak-write-{mode}-{i}": standin.create(f"soak-write-{mode}-{i}", b"initial")
                     for i in range(args.workers)}
            clients.append(LoadClient(instance.port, mode, args.rate / 2, args.workers, Mix(), reads, etags,
                                      standin.etag, issuer.token))
        started = time.monotonic()
        sampler = Sampler(instance, started)
        sampler.start()
        for client in clients:
            client.start()
        time.sleep(args.duration)
        tallies = [client.stop() for client in clients]
        samples = sampler.stop()
        instance.terminate()
        code = instance.wait_exit(timeout=10)
        code_ok = code == 0
    finally:
        if instance is not None:
            instance.stop()
        if issuer is not None:
            issuer.stop()
        standin.stop()

    with open(args.run_dir / "samples.csv", "w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["seconds", "rss_kib", "threads", "fds", "in_flight", "cache_entries", "cpu_seconds"])
        for s in samples:
            writer.writerow([f"{s.t:.2f}", s.rss_kib, s.threads, s.fds, s.in_flight, s.cache_entries,
                             f"{s.cpu_seconds:.2f}"])
    rows, problems = evaluate(samples, args.warmup, args.minute, args.duration)
    served = sum(t.served for t in tallies)
    failed = sum(t.failed for t in tallies)
    if failed:
        causes = {}
        for t in tallies:
            for cause, count in t.failures.items():
                causes[cause] = causes.get(cause, 0) + count
        problems.append(f"{failed} failed requests: {causes}")
    if not code_ok:
        problems.append(f"the service exited with {code} after SIGTERM")
    cpu = samples[-1].cpu_seconds - samples[0].cpu_seconds
    span = samples[-1].t - samples[0].t
    summary = {
        "duration_s": args.duration, "rate": args.rate, "served": served, "failed": failed,
        "achieved_rate": round(served / args.duration, 1), "cpu_percent_of_a_core": round(100 * cpu / span, 1),
        "p50_ms": round(statistics.median(l for t in tallies for l in t.latencies) * 1000, 2),
        "p99_ms": round(max(t.percentile(99) for t in tallies) * 1000, 2),
        "exit_code": code, "figures": rows, "problems": problems,
    }
    (args.run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"\nrequests: {served} served, {failed} failed, {summary['achieved_rate']} req/s "
          f"(half keep-alive, half a new connection each); p50 {summary['p50_ms']} ms, "
          f"p99 {summary['p99_ms']} ms (the worse client); service CPU {summary['cpu_percent_of_a_core']} % of a core; "
          f"exit code after SIGTERM {code}")
    print()
    print(markdown(rows, args.warmup, args.minute, args.duration))
    print(f"samples: {args.run_dir / 'samples.csv'}")
    print("result: " + ("PASS: flat" if not problems else "FAIL: " + "; ".join(problems)))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
