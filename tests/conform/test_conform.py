"""telemed-conform against real services: every check passes on services that follow the rules (the reference
service, the existing-service example, the kit's testbed, a plain Python service), and each misbehaving service
(one rule broken at a time: testbed faults, Python service faults, a chart without the rules) fails exactly the
checks of the broken rule, each naming its rule.

scripts/test-conform.sh builds the binaries and passes their paths in TELEMED_CONFORM_BIN, REFERENCE_SERVICE_BIN,
EXISTING_SERVICE_BIN and KIT_TESTBED_BIN. The checker runs are independent processes on free ports, so they go
side by side (they mostly wait on timers).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE.parent))

import access_tokens  # noqa: E402 (tests/ is on the path only from here)

# The reference service verifies tokens: it trusts a key set served here, and the checker sends one of its tokens.
JWKS = access_tokens.JwksServer()
CALLER = [*(arg for name, value in access_tokens.service_env(JWKS).items() for arg in ("--env", f"{name}={value}")),
          "--header", f"Authorization: Bearer {access_tokens.token()}"]
SERVICE_PY = HERE / "service.py"
CHECKER_TIMEOUT = 60
PARALLEL = 3

# The checks of a service process (not of an image or a chart), by id.
PROCESS_CHECKS = {
    "probes.liveness-up", "probes.readiness-up", "logs.model", "logs.no-secrets", "logs.bad-request-alert",
    "propagation.b3-multi", "propagation.b3-single", "propagation.forwarded-headers", "propagation.user-agent",
    "propagation.log-id", "shutdown.readiness-503", "shutdown.liveness-200", "shutdown.serves-new-connections",
    "shutdown.drains-slow-request", "shutdown.exit-0", "shutdown.second-sigterm", "shutdown.stuck-request",
}
CHART_CHECKS = {
    "chart.render", "chart.probes", "chart.grace-period", "chart.replicas", "chart.zone-spread",
    "chart.max-unavailable", "chart.pdb", "chart.security-context", "chart.resources",
}
IMAGE_CHECKS = {"image.user", "image.read-only", "image.capabilities", "image.pid1", "image.no-shell"}
# What docs/requirements.md says each check's rule is; the checker must name the same.
RULES = {
    "probes.liveness-up": "R11", "probes.readiness-up": "R10", "logs.model": "R13", "logs.no-secrets": "R13",
    "logs.bad-request-alert": "R14", "propagation.b3-multi": "R16", "propagation.b3-single": "R16",
    "propagation.forwarded-headers": "R16", "propagation.user-agent": "R17", "propagation.log-id": "R13",
    "shutdown.readiness-503": "R10", "shutdown.liveness-200": "R11", "shutdown.serves-new-connections": "R8",
    "shutdown.drains-slow-request": "R8", "shutdown.exit-0": "R8", "shutdown.second-sigterm": "R8",
    "shutdown.stuck-request": "R8", "chart.render": "R7", "chart.probes": "R10", "chart.grace-period": "R8",
    "chart.replicas": "R9", "chart.zone-spread": "R9", "chart.max-unavailable": "R12", "chart.pdb": "R9",
    "chart.security-context": "R5", "chart.resources": "R9",
}


def binary(variable: str) -> str:
    path = os.environ.get(variable)
    if not path or not Path(path).is_file():
        pytest.fail(f"{variable} is not set to a built binary: run scripts/test-conform.sh, which builds it")
    return path


def conform(*args: str) -> dict:
    """Runs the checker with JSON output; returns the report with the exit code under "exit"."""
    result = subprocess.run([binary("TELEMED_CONFORM_BIN"), "--format", "json", *args],
                            capture_output=True, text=True, timeout=CHECKER_TIMEOUT)
    assert result.returncode in (0, 1), f"exit {result.returncode}: {result.stderr}"
    report = json.loads(result.stdout)
    report["exit"] = result.returncode
    return report


def by_status(report: dict, status: str) -> set[str]:
    return {check["id"] for check in report["checks"] if check["status"] == status}


def describe(report: dict) -> str:
    return "\n".join(f"{c['status']} {c['rule']} {c['id']}: {c['detail']}" for c in report["checks"]
                     if c["status"] != "skip")


def assert_all_pass(report: dict, checks: set[str]) -> None:
    assert by_status(report, "pass") >= checks, describe(report)
    assert by_status(report, "fail") == set(), describe(report)
    assert report["exit"] == 0
    summary = report["summary"]
    assert summary == {status: len(by_status(report, status)) for status in ("pass", "fail", "skip")}


# A listener closed at SIGTERM answers a readiness probe with 503 or refuses it, depending on which comes first;
# a refusal fails the readiness check too (it never saw 503).
CLOSED_AT_ONCE = {"shutdown.readiness-503"}


def assert_caught(report: dict, expected: set[str], may_also_fail: set[str] = frozenset()) -> None:
    """The checks of the broken rule fail (and no others), each with its rule and a detail, and the exit is 1."""
    failed = by_status(report, "fail")
    assert expected <= failed <= expected | may_also_fail, describe(report)
    for check in report["checks"]:
        assert check["rule"] == RULES.get(check["id"], check["rule"])
        if check["status"] == "fail":
            assert check["detail"] and "\n" not in check["detail"]
    assert report["exit"] == 1


PYTHON_ARGS = ["--slow-path", "/slow", "--upstream-env", "UPSTREAM_URL", "--trigger", "/call"]


def python_service(fault: str | None = None, *extra: str) -> list[str]:
    env = ["--env", f"FAULT={fault}"] if fault else []
    return [*PYTHON_ARGS, *env, *extra, "--", sys.executable, str(SERVICE_PY)]


def kit_testbed_args(fault: str | None = None, *extra: str) -> list[str]:
    env = ["--env", f"TESTBED_FAULT={fault}"] if fault else []
    return ["--slow-path", "/slow?ms=1000", "--upstream-env", "TESTBED_UPSTREAM_URL", "--trigger", "/call",
            *env, *extra, "--", binary("KIT_TESTBED_BIN")]


# A shorter grace period where a fault makes the process run to it: the same checks, less waiting.
SHORT = ["--grace-period", "4s", "--env", "SHUTDOWN_GRACE_PERIOD=4s"]

# Each fault of tests/conform/service.py and the checks it must fail.
PYTHON_FAULTS = {
    "liveness-503": {"probes.liveness-up", "shutdown.liveness-200"},
    "never-ready": PROCESS_CHECKS - {"logs.model", "logs.no-secrets"},
    "plain-log": {"logs.model"},
    "log-query": {"logs.no-secrets"},
    "no-alert": {"logs.bad-request-alert"},
    "drop-b3-multi": {"propagation.b3-multi"},
    "drop-b3-single": {"propagation.b3-single"},
    "drop-request-id": {"propagation.forwarded-headers"},
    "default-agent": {"propagation.user-agent"},
    "no-log-id": {"propagation.log-id"},
    "ready-while-stopping": {"shutdown.readiness-503"},
    "liveness-off-on-stop": {"shutdown.liveness-200"},
    "close-at-once": {"shutdown.serves-new-connections", "shutdown.liveness-200"},
    "cut-in-flight": {"shutdown.drains-slow-request"},
    "exit-1": {"shutdown.exit-0"},
    "second-sigterm-hangs": {"shutdown.second-sigterm"},
    "wait-for-all": {"shutdown.stuck-request"},
}

# Each fault of the kit's testbed (crates/kit-testbed) and the checks it must fail.
TESTBED_FAULTS = {
    "liveness-fails": ({"probes.liveness-up", "shutdown.liveness-200"}, []),
    "plain-stdout": ({"logs.model"}, []),
    "leak-requests": ({"logs.no-secrets"}, []),
    "accept-anything": ({"logs.bad-request-alert"}, []),
    "b3-single-only": ({"propagation.b3-multi"}, []),
    "b3-multi-only": ({"propagation.b3-single"}, []),
    "no-forwarded-headers": ({"propagation.forwarded-headers"}, []),
    "library-user-agent": ({"propagation.user-agent"}, []),
    # Configuration faults of a kit service: no delay, and a shutdown hook that outlives the deadline.
    "no-delay": ({"shutdown.serves-new-connections", "shutdown.liveness-200"}, ["--env", "SHUTDOWN_DELAY=0s"]),
    "hook-past-deadline": ({"shutdown.exit-0"}, ["--env", "TESTBED_HOOK_DURATION=30s"]),
}


def run_all(runs: dict[str, list[str]]) -> dict[str, dict]:
    with ThreadPoolExecutor(PARALLEL) as pool:
        futures = {name: pool.submit(conform, *args) for name, args in runs.items()}
        return {name: future.result() for name, future in futures.items()}


def test_the_reference_service_passes_every_check():
    report = conform("--upstream-env", "KVSTORE_URL", "--trigger", "/settings/theme",
                     "--env", "CACHE_DISABLED=true", *CALLER, "--", binary("REFERENCE_SERVICE_BIN"))
    assert_all_pass(report, PROCESS_CHECKS - {"shutdown.drains-slow-request"})


def test_the_existing_service_example_passes_every_check():
    args = ["--upstream-env", "UPSTREAM_URL", "--trigger", "/upstream"]
    reports = run_all({
        "plain": [*args, "--", binary("EXISTING_SERVICE_BIN")],
        # With span export on, the service's calls are spans of its own: fresh span ids in the same trace. Nothing
        # listens on the discard port, so the spans are dropped after the export fails.
        "exporting": [*args, "--env", "OTEL_EXPORTER_ZIPKIN_ENDPOINT=http://127.0.0.1:9/api/v2/spans", "--",
                      binary("EXISTING_SERVICE_BIN")],
    })
    for report in reports.values():
        assert_all_pass(report, PROCESS_CHECKS - {"shutdown.drains-slow-request"})
    details = {c["id"]: c["detail"] for c in reports["exporting"]["checks"]}
    assert "fresh span" in details["propagation.b3-multi"], details
    assert "fresh span" in details["propagation.b3-single"], details
    details = {c["id"]: c["detail"] for c in reports["plain"]["checks"]}
    assert "unchanged" in details["propagation.b3-multi"], details


def test_the_python_service_passes_every_check_and_each_broken_rule_is_caught():
    runs = {"good": python_service()}
    runs.update({fault: python_service(fault, *SHORT) for fault in PYTHON_FAULTS})
    reports = run_all(runs)
    assert_all_pass(reports.pop("good"), PROCESS_CHECKS)
    for fault, report in reports.items():
        try:
            assert_caught(report, PYTHON_FAULTS[fault], CLOSED_AT_ONCE if fault == "close-at-once" else set())
        except AssertionError as error:
            raise AssertionError(f"FAULT={fault}: {error}") from None


def test_the_kit_testbed_passes_every_check_and_each_fault_is_caught():
    runs = {"good": kit_testbed_args()}
    runs.update({fault: kit_testbed_args(None if extra else fault, *SHORT, "--env", "SHUTDOWN_DELAY=1s", *extra)
                 for fault, (_, extra) in TESTBED_FAULTS.items()})
    reports = run_all(runs)
    assert_all_pass(reports.pop("good"), PROCESS_CHECKS)
    for fault, report in reports.items():
        try:
            assert_caught(report, TESTBED_FAULTS[fault][0], CLOSED_AT_ONCE if fault == "no-delay" else set())
        except AssertionError as error:
            raise AssertionError(f"testbed {fault}: {error}") from None


def test_a_service_that_never_starts_fails_and_names_why():
    report = conform("--startup-timeout", "2s", "--", sys.executable, "-c", "import sys; sys.exit(3)")
    failed = by_status(report, "fail")
    assert {"probes.readiness-up", "shutdown.exit-0", "shutdown.second-sigterm"} <= failed, describe(report)
    detail = next(c["detail"] for c in report["checks"] if c["id"] == "probes.readiness-up")
    assert "exit 3" in detail, detail


def test_the_kit_chart_passes_and_a_chart_without_the_rules_fails_each_check(tmp_path):
    values = tmp_path / "values.yaml"
    values.write_text("config:\n  KVSTORE_URL: https://kvstore.example\n")
    python = ["--python", os.environ.get("CHART_PYTHON", sys.executable)]
    report = conform("--chart", str(ROOT / "chart"), "--values", str(values), *python)
    assert_all_pass(report, CHART_CHECKS)
    assert by_status(report, "skip") == PROCESS_CHECKS | IMAGE_CHECKS
    # The kit's chart refuses values that break most rules (its schema); these it takes, one rule each.
    for fault, broken, expected in [
        ("pdb", "podDisruptionBudget:\n  enabled: false\n", {"chart.pdb"}),
        ("spread", "topologySpread:\n  - topologyKey: kubernetes.io/hostname\n    maxSkew: 1\n"
                   "    whenUnsatisfiable: ScheduleAnyway\n", {"chart.zone-spread"}),
        ("probes", "probes:\n  livenessPath: /health\n", {"chart.probes"}),
    ]:
        (tmp_path / f"{fault}.yaml").write_text(broken)
        report = conform("--chart", str(ROOT / "chart"), "--values", str(values),
                         "--values", str(tmp_path / f"{fault}.yaml"), *python)
        try:
            assert_caught(report, expected)
        except AssertionError as error:
            raise AssertionError(f"chart values {fault}: {error}") from None
    report = conform("--chart", str(HERE / "bare-chart"), *python)
    assert_caught(report, CHART_CHECKS - {"chart.render"})
    # The kit's chart refuses to render without the store's URL (its values schema): the render fails and
    # every chart check with it.
    rejected = conform("--chart", str(ROOT / "chart"), *python)
    assert_caught(rejected, CHART_CHECKS)
    render = next(c for c in rejected["checks"] if c["id"] == "chart.render")
    assert "KVSTORE_URL" in render["detail"], render


def test_text_and_junit_reports(tmp_path):
    bare = ["--chart", str(HERE / "bare-chart"), "--python", os.environ.get("CHART_PYTHON", sys.executable)]
    text = subprocess.run([binary("TELEMED_CONFORM_BIN"), *bare], capture_output=True, text=True, timeout=60)
    assert text.returncode == 1
    lines = text.stdout.splitlines()
    assert any(line.startswith("FAIL R9   chart.pdb ") for line in lines), text.stdout
    skipped = len(PROCESS_CHECKS | IMAGE_CHECKS)
    assert lines[-1] == f"1 passed, 8 failed, {skipped} skipped", lines[-1]
    junit = subprocess.run([binary("TELEMED_CONFORM_BIN"), "--format", "junit", *bare], capture_output=True,
                           text=True, timeout=60)
    suite = ElementTree.fromstring(junit.stdout).find("testsuite")
    assert suite is not None and suite.get("failures") == "8", junit.stdout
    failed = {case.get("name") for case in suite.iter("testcase") if case.find("failure") is not None}
    assert failed == CHART_CHECKS - {"chart.render"}
    pdb = next(case for case in suite.iter("testcase") if case.get("name") == "chart.pdb")
    assert pdb.get("classname") == "R9" and "PodDisruptionBudget" in pdb.find("failure").get("message")


def test_usage_errors_exit_2_with_one_line():
    for args in (["--format", "json"], ["--trigger", "/x", "--", "true"], ["--port", "0", "--", "true"],
                 ["--chart", str(HERE)], ["--grace-period", "1s", "--min-delay", "2s", "--", "true"],
                 ["--image", "x", "--", "true"]):
        result = subprocess.run([binary("TELEMED_CONFORM_BIN"), *args], capture_output=True, text=True, timeout=10)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert result.stderr.strip(), args
