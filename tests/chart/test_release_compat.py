"""R12: a new release coexists with the previous one and can be rolled back to it, so the previous release's
values must keep working with the new chart, and the environment they produce must start the new binary.

tests/chart/previous-release-values.yaml is the v0.1.0 production values file, frozen. (tests/image runs the
new image with the same environment.)
"""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate

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


def test_upgrade_keeps_the_selector(chart):
    # A Deployment's selector is immutable: if the new chart changed it, `helm upgrade` from the previous
    # release would fail and the two releases could not be swapped back and forth.
    values = previous_values(chart)
    current = next(o for o in chart.objects(chart.render(values)) if o["kind"] == "Deployment")
    assert current["spec"]["selector"]["matchLabels"] == {
        "app.kubernetes.io/name": "reference-service",
        "app.kubernetes.io/instance": "reference-service",
    }


def test_new_binary_starts_with_the_previous_environment(chart, service_binary):
    objects = chart.objects(chart.render(previous_values(chart)))
    env = kit_helpers.env_from_render(objects)
    pod = next(o for o in objects if o["kind"] == "Deployment")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    port = container["ports"][0]["containerPort"]

    service = kit_helpers.KitProcess([str(service_binary)], env=env)
    try:
        line = service.wait_for(kit_helpers.listening)
        assert int(line["port"]) == port
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            path = container[probe]["httpGet"]["path"]
            kit_helpers.wait_until(lambda: kit_helpers.probe_status(port, path) == 200, 10, f"{probe} {path}")
    finally:
        code = service.stop(timeout=pod["terminationGracePeriodSeconds"])
    assert code == 0, service.output()
    alarms = [line for line in service.output().splitlines() if (kit_helpers.log_fields(line) or {}).get("type") == "alarm"]
    assert alarms == []
