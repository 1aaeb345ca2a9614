"""Rolling restarts under constant load behind HAProxy, counting every failed request.

Two reference-service instances run behind HAProxy, with the key-value store stand-in behind them. While a load
client sends a constant mix of requests through HAProxy, each instance is replaced in turn the way a Kubernetes
Deployment with `maxSurge: 1, maxUnavailable: 0` does it (the chart's strategy):

1. start the replacement on a new port (a new pod gets a new IP) and poll its `/healthz` until 200 (the kubelet's
   readiness probe);
2. add it to HAProxy through the runtime API (the endpoint is added) and wait until HAProxy's own health check
   has it UP;
3. SIGTERM the old instance; `--endpoint-lag` seconds later put its slot in maintenance (the EndpointSlice
   controller removes a terminating pod's endpoint at once, and kube-proxy or the Istio sidecars learn of it a
   moment later: the lag models that propagation, 1 s by default);
4. wait for the old process to exit and check its exit code is 0.

HAProxy health-checks every slot on `/healthz` with the chart's readinessProbe values (every 5 s, timeout 2 s,
fall 2, rise 1); it retries nothing (`retries 0`, no `option redispatch`), so a failure reaches the client.

`--routing probe` leaves out step 3's removal: HAProxy's health check alone must notice the 503, as a load balancer
that only probes would. With the chart's values that takes 5 to 10 s, longer than `SHUTDOWN_DELAY`, so it fails:
the service relies on Kubernetes removing a terminating pod's endpoint, not on the readiness probe.

Scenarios (`--profile`): rolling restarts in both load modes (`keepalive`, `newconn`), a coexistence round in
which the previous release (the latest in CHANGELOG.md) and this one serve the same full load mix side by side
while one replaces the other (R12; a build lacking a route of the mix fails the round), and
negative controls that must fail: `SHUTDOWN_DELAY=0s`, where the old instance stops accepting at once while HAProxy
still routes to it for the endpoint lag. Output ends with `N passed, N failed`; exit status 1 when any failed.

Run through scripts/rolling-restart.sh (release builds, full run) or scripts/test-rolling.sh (CI, short).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path

from harness import CheckSettings, Haproxy, Instance, Issuer, StandIn, request, wait_until
from load import LoadClient, Mix, Tally

READ_KEY = "rolling-read"
# The platform's terminationGracePeriodSeconds: a process still running then is killed, and that is a failure.
GRACE_PERIOD = 10.0
READ_VALUE = b"the value every reader expects"


@dataclass(frozen=True)
class Build:
    """A reference-service binary and the name it is reported under."""

    label: str
    binary: Path


@dataclass
class Scenario:
    """One run: start two instances of `initial`, then roll to each build of `rollouts` in turn."""

    name: str
    mode: str
    duration: float
    initial: Build
    rollouts: list[Build]
    # Repeat the rollouts until `duration` has passed (a restart loop) instead of doing each once.
    repeat: bool = True
    # Seconds of steady load before the first replacement and after each one.
    warmup: float = 2.0
    hold: float = 1.0
    expect_failures: bool = False
    routing: str = "endpoints"
    check: CheckSettings = field(default_factory=CheckSettings)
    env: dict[str, str] = field(default_factory=dict)
    mix: Mix = field(default_factory=Mix)
    # Informational scenarios are reported but do not count towards passed / failed.
    informational: bool = False


@dataclass
class Replacement:
    """Timings of one replacement, in seconds."""

    old: str
    new: str
    new_ready: float
    new_up_in_proxy: float
    old_exit_after_sigterm: float
    old_exit_code: int | None
    total: float

    def describe(self) -> str:
        code = "killed" if self.old_exit_code is None else f"exit {self.old_exit_code}"
        return (f"{self.old} -> {self.new}: new ready {self.new_ready:.2f} s, UP in HAProxy +{self.new_up_in_proxy:.2f} s, "
                f"old {code} {self.old_exit_after_sigterm:.2f} s after SIGTERM, total {self.total:.2f} s")


@dataclass
class Result:
    scenario: Scenario
    tally: Tally
    elapsed: float
    replacements: list[Replacement]
    served_by_version: Counter
    proxy_failures: list[str]
    proxy_counters: dict[str, int]
    problems: list[str]

    @property
    def passed(self) -> bool:
        return not self.problems

    def to_json(self) -> dict:
        t = self.tally
        return {
            "scenario": self.scenario.name,
            "mode": self.scenario.mode,
            "passed": self.passed,
            "problems": self.problems,
            "seconds": round(self.elapsed, 1),
            "served": t.served,
            "served_by_kind": dict(t.ok),
            "failed": t.failed,
            "failures_by_cause": dict(t.failures),
            "served_by_version": dict(self.served_by_version),
            "latency_ms": {"p50": round(t.percentile(50) * 1000, 2), "p99": round(t.percentile(99) * 1000, 2),
                           "max": round(max(t.latencies, default=0) * 1000, 2)},
            "replacements": [r.__dict__ for r in self.replacements],
            "proxy_counters": self.proxy_counters,
            "proxy_failure_lines": self.proxy_failures[:20],
        }


class Fleet:
    """The stand-in, HAProxy and the instances of one scenario."""

    SLOTS = 4

    def __init__(self, scenario: Scenario, standin_binary: Path, run_dir: Path, endpoint_lag: float):
        self.scenario = scenario
        self.run_dir = run_dir
        self.endpoint_lag = endpoint_lag
        self.standin = StandIn(standin_binary, run_dir)
        try:
            self.issuer = Issuer(standin_binary, run_dir)
        except BaseException:
            self.standin.stop()
            raise
        try:
            self.proxy = Haproxy(run_dir, self.SLOTS, scenario.check)
        except BaseException:
            self.standin.stop()
            self.issuer.stop()
            raise
        self.free_slots = deque(f"s{i}" for i in range(1, self.SLOTS + 1))
        self.instances: dict[str, Instance] = {}
        self.version_by_port: dict[str, str] = {}
        # Every instance ever started, so that cleanup finds one that failed before it was placed.
        self.all: list[Instance] = []

    def start_instance(self, build: Build) -> Instance:
        instance = Instance(build.binary, build.label, self.standin.url, self.issuer, self.run_dir,
                            f"{build.label}#{len(self.all) + 1}", self.scenario.env)
        self.all.append(instance)
        self.version_by_port[str(instance.port)] = build.label
        return instance

    def place(self, instance: Instance) -> tuple[str, float]:
        """Adds a ready instance to HAProxy; returns its slot and the seconds until HAProxy had it UP."""
        slot = self.free_slots.popleft()
        self.proxy.add(slot, instance.port)
        up = self.proxy.wait_up(slot)
        self.instances[slot] = instance
        return slot, up

    def replace(self, slot: str, build: Build) -> Replacement:
        started = time.monotonic()
        new = self.start_instance(build)
        ready = new.wait_ready()
        new_slot, up = self.place(new)
        old = self.instances.pop(slot)
        old.terminate()
        if self.scenario.routing == "endpoints":
            time.sleep(self.endpoint_lag)  # the modelled propagation delay, not a synchronisation
            self.proxy.remove(slot)
            code = old.wait_exit(timeout=GRACE_PERIOD)
        else:
            code = old.wait_exit(timeout=GRACE_PERIOD)
            # Only HAProxy's own check takes it out: leave it in rotation until the check has seen it fail.
            try:
                wait_until(lambda: not self.proxy.status(slot).startswith("UP"), 30, f"HAProxy to see {slot} DOWN")
            finally:
                self.proxy.remove(slot)
        self.free_slots.append(slot)
        return Replacement(old=f"{old.label} ({slot})", new=f"{new.label} ({new_slot})", new_ready=ready,
                           new_up_in_proxy=up, old_exit_after_sigterm=(old.exited_at or 0) - (old.sigterm_at or 0),
                           old_exit_code=code, total=time.monotonic() - started)

    def stop(self) -> None:
        # Every instance takes SHUTDOWN_DELAY to stop: signal them all first, then wait, so that cleanup takes one
        # delay and not one per instance.
        stopping = [*(i for i in self.all if i.proc.poll() is None), self.standin, self.issuer]
        for process in stopping:
            if process.sigterm_at is None:
                process.terminate()
        for process in stopping:
            process.stop()
        self.proxy.stop()


class RouteMissing(Exception):
    """A build does not serve a route of the load mix."""


def create_keys(standin: StandIn, workers: int) -> dict[str, str]:
    """Creates the read key and one write key per worker directly in the store; returns the write keys' ETags."""
    standin.create(READ_KEY, READ_VALUE)
    return {key: standin.create(key, b"initial") for key in (f"rolling-write-{i}" for i in range(workers))}


def missing_routes(fleet: Fleet, build: Build, mix: Mix) -> list[str]:
    """The routes of the load mix that `build` does not serve: `GET /`, and a read of the existing key for the
    settings API (writes go through the same API and are counted by the load itself)."""
    instance = fleet.start_instance(build)
    try:
        instance.wait_ready()
        routes = []
        if mix.root:
            routes.append(("GET /", "/", None))
        if mix.read or mix.write:
            routes.append((f"GET /settings/{READ_KEY}", f"/settings/{READ_KEY}", READ_VALUE))
        missing = []
        for name, path, expected in routes:
            answer = request(instance.port, "GET", path, headers={"Authorization": f"Bearer {fleet.issuer.token}"})
            if answer is None or answer[0] != 200 or (expected is not None and answer[2] != expected):
                missing.append(f"{name} ({'no answer' if answer is None else answer[0]})")
        return missing
    finally:
        # Not waited for here: `Fleet.stop` waits for every instance at once.
        instance.terminate()


def run(scenario: Scenario, standin_binary: Path, run_root: Path, rate: float, workers: int,
        endpoint_lag: float, log=print) -> Result:
    run_dir = run_root / scenario.name
    run_dir.mkdir(parents=True, exist_ok=True)
    fleet = Fleet(scenario, standin_binary, run_dir, endpoint_lag)
    load = None
    try:
        etags = create_keys(fleet.standin, workers)
        builds = {b.label: b for b in [scenario.initial] + scenario.rollouts}.values()
        # Every build must serve the whole mix. A route that one of them lacks is a route that disappeared
        # between releases (or never reached one): that fails the run, the load is never narrowed to fit.
        lacking = [f"{b.label} does not serve {', '.join(missing)}" for b in builds
                   if (missing := missing_routes(fleet, b, scenario.mix))]
        if lacking:
            raise RouteMissing("; ".join(lacking))
        for _ in range(2):
            instance = fleet.start_instance(scenario.initial)
            instance.wait_ready()
            fleet.place(instance)
        load = LoadClient(fleet.proxy.port, scenario.mode, rate, workers, scenario.mix, {READ_KEY: READ_VALUE}, etags,
                          fleet.standin.etag, fleet.issuer.token)
        load.start()
        deadline = time.monotonic() + scenario.duration
        time.sleep(scenario.warmup)
        replacements = []
        done = False
        while not done:
            for build in scenario.rollouts:
                for slot in list(fleet.instances):
                    if scenario.repeat and replacements and time.monotonic() > deadline - 5:
                        done = True
                        break
                    replacement = fleet.replace(slot, build)
                    replacements.append(replacement)
                    log(f"  {replacement.describe()}")
                    time.sleep(scenario.hold)
                if done:
                    break
            done = done or not scenario.repeat
        remaining = deadline - time.monotonic()
        if remaining > 0:
            time.sleep(remaining)
        tally = load.stop()
        proxy_failures = fleet.proxy.failure_lines()
        stats = fleet.proxy.stats()
        proxy_counters = {name: sum(int(row.get(name) or 0) for row in stats.values())
                          for name in ("econ", "eresp", "hrsp_5xx", "wretr", "wredis")}
    finally:
        if load is not None and not load.stopped_at:
            load.stop()
        fleet.stop()
    served_by_version = Counter()
    for served_by, count in tally.served_by.items():
        served_by_version[fleet.version_by_port.get(served_by.rpartition("/")[2], served_by)] += count
    problems = judge(scenario, tally, replacements, proxy_failures, served_by_version)
    return Result(scenario, tally, load.elapsed, replacements, served_by_version, proxy_failures, proxy_counters,
                  problems)


def judge(scenario: Scenario, tally: Tally, replacements: list[Replacement], proxy_failures: list[str],
          served_by_version: Counter) -> list[str]:
    """What is wrong with a run, given what it had to show; empty when it passed."""
    problems = []
    if tally.served == 0:
        problems.append("no request was served")
    if not replacements:
        problems.append("no instance was replaced")
    if scenario.expect_failures:
        if tally.failed == 0:
            problems.append("expected failed requests (negative control), saw none: the test could not fail")
        return problems
    if tally.failed:
        problems.append(f"{tally.failed} failed requests")
    if proxy_failures:
        problems.append(f"{len(proxy_failures)} non-2xx answers in HAProxy's log")
    for replacement in replacements:
        if replacement.old_exit_code != 0:
            problems.append(f"{replacement.old} did not exit 0 ({replacement.old_exit_code})")
    for label in {scenario.initial.label, *(b.label for b in scenario.rollouts)}:
        if served_by_version[label] == 0:
            problems.append(f"{label} served no request")
    for kind in ("root", "read", "write"):
        if getattr(scenario.mix, kind) and tally.ok[kind] == 0:
            problems.append(f"no {kind} request succeeded: the load mix was not exercised")
    return problems


def report(result: Result) -> str:
    s, t = result.scenario, result.tally
    expectation = "must fail" if s.expect_failures else "zero failures required"
    lines = [
        f"== {s.name}: {s.mode} load, {result.elapsed:.0f} s, routing {s.routing}, health check {s.check.describe()}"
        f"{', ' + ' '.join(f'{k}={v}' for k, v in s.env.items()) if s.env else ''} ({expectation})",
        f"  requests: {t.served} served ({', '.join(f'{k} {v}' for k, v in sorted(t.ok.items()))}), "
        f"{t.failed} failed; {t.served / max(result.elapsed, 0.001):.0f} req/s",
        "  failures by cause: " + (", ".join(f"{k}: {v}" for k, v in t.failures.most_common()) or "none"),
        "  served by version: " + ", ".join(f"{k} {v}" for k, v in sorted(result.served_by_version.items())),
        f"  latency: p50 {t.percentile(50) * 1000:.1f} ms, p99 {t.percentile(99) * 1000:.1f} ms, "
        f"max {max(t.latencies, default=0) * 1000:.1f} ms",
        "  HAProxy counters: " + ", ".join(f"{k} {v}" for k, v in result.proxy_counters.items())
        + f"; non-2xx log lines {len(result.proxy_failures)}",
    ]
    for line in result.proxy_failures[:5]:
        lines.append(f"    haproxy: {line}")
    if t.failure_times:
        lines.append(f"  failures between {min(t.failure_times):.2f} s and {max(t.failure_times):.2f} s of the run")
    verdict = "PASS" if result.passed else "FAIL: " + "; ".join(result.problems)
    if s.informational:
        verdict = f"INFORMATIONAL ({'as expected' if result.passed else '; '.join(result.problems)})"
    lines.append(f"  result: {verdict}")
    return "\n".join(lines)


def scenarios(args, current: Build, previous: Build | None) -> list[Scenario]:
    ci = args.profile == "ci"
    duration = args.duration or (25 if ci else 120)
    hold = 4 if ci else 10
    chosen = [
        Scenario("rolling-keepalive", "keepalive", duration, current, [current]),
        Scenario("rolling-newconn", "newconn", duration, current, [current]),
    ]
    if previous is not None:
        # Upgrade, then (full profile) roll back: both directions have one release of each serving together.
        rollouts = [current] if ci else [current, previous]
        for mode in (["newconn"] if ci else ["keepalive", "newconn"]):
            chosen.append(Scenario(f"coexistence-{mode}", mode, 0, previous, rollouts, repeat=False, hold=hold))
    for mode in (["newconn"] if ci else ["keepalive", "newconn"]):
        chosen.append(Scenario(f"negative-control-delay-0-{mode}", mode, 0, current, [current], repeat=False,
                               env={"SHUTDOWN_DELAY": "0s"}, expect_failures=True))
    if not ci:
        chosen.append(Scenario("probe-only-fast-check", "newconn", 0, current, [current], repeat=False,
                               routing="probe", check=CheckSettings(inter=1, timeout=1, fall=1, rise=1),
                               informational=True))
        chosen.append(Scenario("probe-only-chart-readiness-probe", "newconn", 0, current, [current], repeat=False,
                               routing="probe", expect_failures=True, informational=True))
    if args.only:
        chosen = [s for s in chosen if any(word in s.name for word in args.only)]
    return chosen


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", choices=["ci", "full"], default="ci")
    parser.add_argument("--service", type=Path, required=True, help="this release's reference-service binary")
    parser.add_argument("--standin", type=Path, required=True, help="the kvstore-standin binary (issuer-standin is taken from the same folder)")
    parser.add_argument("--previous", type=Path, help="the previous release's binary (coexistence); none: skip")
    parser.add_argument("--previous-label", default="previous")
    parser.add_argument("--duration", type=float, help="seconds of each rolling-restart run (ci 25, full 120)")
    parser.add_argument("--rate", type=float, default=200, help="requests per second in total (200)")
    parser.add_argument("--workers", type=int, default=8, help="load threads (8)")
    parser.add_argument("--endpoint-lag", type=float, default=1.0,
                        help="seconds from SIGTERM until HAProxy stops routing to the old instance (1)")
    parser.add_argument("--run-dir", type=Path, required=True, help="where logs and HAProxy's config go")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--only", nargs="*", help="run only the scenarios whose name contains one of these")
    args = parser.parse_args()

    current = Build("current", args.service)
    previous = Build(args.previous_label, args.previous) if args.previous else None
    results = []
    broken = 0
    for scenario in scenarios(args, current, previous):
        print(f"\n-- {scenario.name}", flush=True)
        try:
            result = run(scenario, args.standin, args.run_dir, args.rate, args.workers, args.endpoint_lag,
                         log=lambda line: print(line, flush=True))
        except Exception:  # a scenario that could not run counts as failed; the others still run
            traceback.print_exc()
            print("  result: FAIL: the scenario could not run", flush=True)
            broken += not scenario.informational
            continue
        print(report(result), flush=True)
        results.append(result)
    if args.json:
        args.json.write_text(json.dumps([r.to_json() for r in results], indent=2))
    counted = [r for r in results if not r.scenario.informational]
    passed = sum(r.passed for r in counted)
    failed = len(counted) - passed + broken
    print(f"\nlogs: {args.run_dir}")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
