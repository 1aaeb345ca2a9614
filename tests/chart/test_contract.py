"""One truth for port, probe paths, grace period, user and version across the kit, the Dockerfile, the chart
and the eHealth platform values: each test reads two of them and fails when they drift apart.

The kit's side is read from the real binary (its "listening" line and its answers on the default port), not
from a copy of its defaults.
"""

from __future__ import annotations

import json
import subprocess
import re
import tomllib

import pytest
import yaml

import kit_helpers
from kit_helpers import access_tokens

ROOT = kit_helpers.ROOT

# Variables the chart derives from structural values, with those values; every other kit variable is offered
# as `config.<NAME>` in values.yaml.
STRUCTURAL_VARIABLES = {
    "PORT": "containerPort",
    "SHUTDOWN_GRACE_PERIOD": "shutdown.gracePeriodSeconds",
    "SHUTDOWN_DELAY": "shutdown.delaySeconds",
    "METRICS_PORT": "metrics.port",
}
# The kit's variables as specified (some not read by the code yet): the chart offers at least these.
SPECIFIED_VARIABLES = {
    "PORT", "OTEL_SERVICE_NAME", "SHUTDOWN_GRACE_PERIOD", "SHUTDOWN_DELAY", "LIVENESS_STALL_THRESHOLD",
    "READINESS_CHECK_INTERVAL", "READINESS_CHECK_TIMEOUT", "LOG_LEVEL", "LOG_FORMAT", "B3_INJECT", "USER_AGENT",
    "OUTBOUND_CONNECT_TIMEOUT", "OUTBOUND_TIMEOUT", "OTEL_EXPORTER_ZIPKIN_ENDPOINT", "OTEL_TRACES_SAMPLER_ARG",
    "KVSTORE_URL", "KVSTORE_APPLICATION", "CACHE_DISABLED", "METRICS_PORT",
}


def dockerfile_instruction(name: str) -> list[str]:
    """The arguments of every `NAME` instruction of the runtime stage (after its FROM)."""
    text = (ROOT / "Dockerfile").read_text()
    runtime = text[text.index("AS runtime"):]
    return re.findall(rf"^{name}\s+(.+)$", runtime, flags=re.MULTILINE)


@pytest.fixture(scope="module")
def defaults():
    return yaml.safe_load((kit_helpers.CHART / "values.yaml").read_text())


@pytest.fixture(scope="module")
def pod_spec(chart):
    objects = chart.objects(chart.render({"config": {"KVSTORE_URL": "https://kvstore.example"}}))
    return next(o for o in objects if o["kind"] == "Deployment")["spec"]["template"]["spec"]


def test_chart_runs_as_the_image_user(pod_spec):
    (user,) = dockerfile_instruction("USER")
    uid, gid = (int(part) for part in user.split(":"))
    assert uid >= 10000, "a numeric high user id, outside the host's user range"
    assert (pod_spec["securityContext"]["runAsUser"], pod_spec["securityContext"]["runAsGroup"]) == (uid, gid)


def test_chart_port_is_the_exposed_port(defaults):
    assert dockerfile_instruction("EXPOSE") == [str(defaults["containerPort"])]
    assert dockerfile_instruction("STOPSIGNAL") == ["SIGTERM"]


def test_app_version_is_the_workspace_version():
    workspace = tomllib.loads((ROOT / "Cargo.toml").read_text())["workspace"]["package"]["version"]
    chart_yaml = yaml.safe_load((kit_helpers.CHART / "Chart.yaml").read_text())
    assert chart_yaml["appVersion"] == workspace
    example = yaml.safe_load((kit_helpers.CHART / "ehealth-values.example.yaml").read_text())
    assert example["appVersion"] == example["imageTag"] == workspace


def test_binary_without_kvstore_url_fails_at_startup(service_binary):
    """A deployment that forgets KVSTORE_URL must fail at once with the configuration error, never fall back
    to a stand-in."""
    result = subprocess.run([str(service_binary)], env={}, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2, result.stdout
    lines = result.stdout.splitlines()
    assert len(lines) == 1, lines
    assert json.loads(lines[0])["body"].startswith("KVSTORE_URL is not set: expected ")


def test_binary_defaults_match_the_chart(service_binary, defaults, pod_spec):
    # Nothing listens there: the key-value store check is optional, so the probes still pass (degraded).
    # The issuer's keys are required before the service is ready: served here.
    jwks = access_tokens.JwksServer()
    service = kit_helpers.KitProcess(
        [str(service_binary)],
        env={"KVSTORE_URL": "http://127.0.0.1:9", **access_tokens.service_env(jwks)},
    )
    try:
        line = service.wait_for(kit_helpers.listening)
        assert int(line["port"]) == defaults["containerPort"]
        assert int(line["shutdown_grace_period_ms"]) == defaults["shutdown"]["gracePeriodSeconds"] * 1000
        assert int(line["shutdown_grace_period_ms"]) == pod_spec["terminationGracePeriodSeconds"] * 1000
        assert int(line["shutdown_delay_ms"]) == defaults["shutdown"]["delaySeconds"] * 1000
        service.wait_for(access_tokens.keys_loaded)

        port = defaults["containerPort"]
        container = pod_spec["containers"][0]
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            path = container[probe]["httpGet"]["path"]
            assert kit_helpers.http_get(port, path)[0] == 200, f"{probe} {path}"
        status, _, body = kit_helpers.http_get(port, "/")
        assert status == 200
        about = json.loads(body)
        chart_yaml = yaml.safe_load((kit_helpers.CHART / "Chart.yaml").read_text())
        assert about["version"] == chart_yaml["appVersion"]
        assert kit_helpers.http_get(port, "/no-such-path")[0] == 404, "the probe checks above can fail"
    finally:
        code = service.stop(timeout=defaults["shutdown"]["gracePeriodSeconds"] + 5)
        jwks.close()
    assert code == 0, service.output()


def kit_variables() -> set[str]:
    """Every variable name read through `Env` by the kit and the service the chart deploys (test-only
    binaries such as kit-testbed read knobs of their own that no deployment sets)."""
    pattern = re.compile(r'\.(?:raw|parse_with|parse_or|duration_or|bool_or|required|port|port_or)\(\s*"([A-Z][A-Z0-9_]*)"')
    names = set()
    for source in [*ROOT.glob("crates/telemed-kit/src/**/*.rs"), *ROOT.glob("examples/reference-service/src/**/*.rs")]:
        names.update(pattern.findall(source.read_text()))
    return names


def chart_variables(defaults: dict) -> dict[str, str]:
    """Every variable the chart sets, with the value that sets it."""
    return {**STRUCTURAL_VARIABLES, **{name: f"config.{name}" for name in defaults["config"]}}


def test_chart_offers_every_kit_variable(defaults):
    offered = chart_variables(defaults)
    read = kit_variables()
    assert {"PORT", "SHUTDOWN_GRACE_PERIOD", "SHUTDOWN_DELAY"} <= read, "the source scan must find the kit's reads"
    missing = (read | SPECIFIED_VARIABLES) - set(offered)
    assert not missing, f"offer {sorted(missing)} in chart/values.yaml `config` and values.schema.json"
    assert not set(STRUCTURAL_VARIABLES) & set(defaults["config"]), "one value per variable"
    for variable, value_path in STRUCTURAL_VARIABLES.items():
        node = defaults
        for part in value_path.split("."):
            assert part in node, f"{variable}: chart value {value_path} is missing from values.yaml"
            node = node[part]
    schema = json.loads((kit_helpers.CHART / "values.schema.json").read_text())
    assert set(schema["properties"]["config"]["properties"]) == set(defaults["config"])


def test_readme_values_table_is_current(chart):
    assert chart.update_readme(check=True), "run: python scripts/render-chart.py readme"


def test_ehealth_platform_values_match_the_chart(chart):
    example = yaml.safe_load((kit_helpers.CHART / "ehealth-values.example.yaml").read_text())
    env = {entry["name"]: entry["value"] for entry in example["env"]}
    values = {"config": {k: v for k, v in env.items() if k not in STRUCTURAL_VARIABLES}}
    objects = chart.objects(chart.render(values))
    pod = next(o for o in objects if o["kind"] == "Deployment")["spec"]["template"]["spec"]
    container = pod["containers"][0]

    assert example["containerPort"] == container["ports"][0]["containerPort"]
    assert example["readinessProbe"]["httpPath"] == container["readinessProbe"]["httpGet"]["path"]
    assert example["livenessProbe"]["httpPath"] == container["livenessProbe"]["httpGet"]["path"]
    assert env == kit_helpers.env_from_render(objects)
    assert f"{pod['terminationGracePeriodSeconds']}s" == env["SHUTDOWN_GRACE_PERIOD"] == "10s", (
        "the platform's grace period is 10 s (R8)")
