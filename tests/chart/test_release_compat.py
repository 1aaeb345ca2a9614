"""R12: a new release coexists with the previous one and can be rolled back to it, so the previous release's
values must keep working with the new chart, and the environment they produce must start the new binary.

tests/chart/previous-release-values.yaml is the production values file of the latest release in CHANGELOG.md
(0.1.0), frozen; that release's own chart is rendered from its commit. (tests/image runs the new image with the
same environment.)
"""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
from pathlib import Path

import kubernetes_validate
import pytest

import kit_helpers

PREVIOUS = Path(__file__).parent / "previous-release-values.yaml"


def previous_values(chart) -> dict:
    return chart.load_values([PREVIOUS])


def test_previous_values_render_validate_and_lint(chart):
    values = previous_values(chart)
    assert chart.lint(values) == []
    objects = chart.objects(chart.render(values))
    for obj in objects:
        kubernetes_validate.validate(obj, kubernetes_validate.utils.latest_version(), strict=True)
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"].endswith(values["image"]["digest"])


@pytest.fixture(scope="module")
def released_chart(tmp_path_factory) -> tuple[str, Path]:
    """The chart of the latest release in CHANGELOG.md, extracted from that release's own commit."""
    version, commit = kit_helpers.latest_release()
    out = tmp_path_factory.mktemp(f"chart-{version}")
    archive = subprocess.run(["git", "-C", str(kit_helpers.ROOT), "archive", commit, "chart"],
                             capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(out, filter="data")
    return version, out / "chart"


def selectors(objects: list[dict]) -> dict[str, dict]:
    """Every label selector of a render, by kind: the Deployment's (immutable), the Service's, the PDB's."""
    found = {}
    for obj in objects:
        spec = obj.get("spec", {})
        if obj["kind"] == "Service":
            found["Service"] = spec["selector"]
        elif obj["kind"] in ("Deployment", "PodDisruptionBudget"):
            found[obj["kind"]] = spec["selector"]["matchLabels"]
    return found


def test_previous_values_are_the_latest_release(chart, released_chart):
    version, _ = released_chart
    assert previous_values(chart)["image"]["tag"] == version, \
        "previous-release-values.yaml must be the values of the latest release in CHANGELOG.md"


def test_upgrade_keeps_the_selector(chart, released_chart):
    # A Deployment's selector is immutable: if the new chart changed it, `helm upgrade` from the previous
    # release would fail and the two releases could not be swapped back and forth. The previous release's own
    # chart, rendered from its commit with its values, is what the cluster holds.
    values = previous_values(chart)
    _, previous_chart = released_chart
    released = selectors(chart.objects(chart.render(values, chart=previous_chart)))
    current = selectors(chart.objects(chart.render(values)))
    assert set(released) >= {"Deployment", "Service"}, released
    assert current == released


def test_new_binary_starts_with_the_previous_environment(chart, service_binary):
    objects = chart.objects(chart.render(previous_values(chart)))
    env = kit_helpers.env_from_render(objects)
    pod = next(o for o in objects if o["kind"] == "Deployment")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    port = container["ports"][0]["containerPort"]

    # The previous values name the platform's inttest environment, out of reach here: the store (an optional
    # check) and the token issuer, whose keys the new binary needs before it is ready (AUTH_ISSUER, derived by
    # the chart from KVSTORE_URL). So the pod would start and live, and be kept out of the load balancer until
    # the issuer answers, for that reason alone.
    assert env["AUTH_ISSUER"] == "https://saml.inttest.ehealth.sundhed.dk/auth/realms/ehealth"
    service = kit_helpers.KitProcess([str(service_binary)], env=env)
    try:
        line = service.wait_for(kit_helpers.listening)
        assert int(line["port"]) == port
        for probe in ("startupProbe", "livenessProbe"):
            path = container[probe]["httpGet"]["path"]
            kit_helpers.wait_until(lambda: kit_helpers.probe_status(port, path) == 200, 10, f"{probe} {path}")
        service.wait_for(lambda fields: fields.get("check") == "auth-keys"
                         and fields.get("body") == "readiness check failed")
        status, _, body = kit_helpers.http_get(port, container["readinessProbe"]["httpGet"]["path"])
        checks = json.loads(body)["checks"]
        assert status == 503 and checks["auth-keys"]["status"] == "down", body
        assert {name for name, check in checks.items() if check["status"] == "down"} <= {"auth-keys", "kvstore"}
    finally:
        code = service.stop(timeout=pod["terminationGracePeriodSeconds"])
    assert code == 0, service.output()
    alarms = [line for line in service.output().splitlines() if (kit_helpers.log_fields(line) or {}).get("type") == "alarm"]
    assert alarms == []
