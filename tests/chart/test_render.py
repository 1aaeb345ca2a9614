"""The chart renders with the real Helm engine, passes `helm lint --strict`, validates strictly against the
Kubernetes API schemas and passes checkov, for the default values and for every optional feature turned on."""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

import kit_helpers

DIGEST = "sha256:" + "ab" * 32


def scenarios() -> dict[str, dict]:
    """Value sets that together turn on every template branch."""
    required = {"config": {"KVSTORE_URL": "https://kvstore.inttest.ehealth.sundhed.dk"}}
    return {
        "defaults": required,
        "previous-release": yaml.safe_load((Path(__file__).parent / "previous-release-values.yaml").read_text()),
        "everything-on": {
            "config": {
                "KVSTORE_URL": "https://kvstore.exttest.ehealth.sundhed.dk",
                "LOG_LEVEL": "debug",
                "OTEL_TRACES_SAMPLER_ARG": 0.25,
                "CACHE_DISABLED": True,
                "OTEL_EXPORTER_ZIPKIN_ENDPOINT": "http://zipkin.istio-system:9411/api/v2/spans",
            },
            "image": {"digest": DIGEST},
            "autoscaling": {"enabled": True, "minReplicas": 3, "maxReplicas": 8},
            "istio": {"enabled": True},
            "metrics": {"port": 9090, "scrape": True},
            "serviceAccount": {"annotations": {"example.com/role": "reader"}},
            "extraEnv": [{"name": "EXTRA", "value": "1"}],
            "imagePullSecrets": [{"name": "harbor"}],
            "podAnnotations": {"example.com/team": "telemed"},
            "networkPolicy": {"ingressFrom": [{"namespaceSelector": {"matchLabels": {"name": "istio-ingress"}}}]},
            "priorityClassName": "telemed-high",
            "shutdown": {"gracePeriodSeconds": 30, "delaySeconds": 5.5},
        },
        "minimal-objects": {
            **required,
            "serviceAccount": {"create": False},
            "podDisruptionBudget": {"enabled": False},
            "networkPolicy": {"enabled": False},
            "topologySpread": [],
        },
    }


SCENARIOS = scenarios()


def kinds(objects: list[dict]) -> list[str]:
    return sorted(o["kind"] for o in objects)


def deployment(objects: list[dict]) -> dict:
    return next(o for o in objects if o["kind"] == "Deployment")


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_lint_strict_finds_no_warning(chart, scenario):
    assert chart.lint(SCENARIOS[scenario]) == []


def test_lint_reports_schema_errors(chart):
    # Guards the check above: lint must be able to fail.
    problems = chart.lint({})
    assert any("KVSTORE_URL" in problem for problem in problems), problems


def kube_versions() -> list[str]:
    """The oldest version Chart.yaml admits, 1.31 and the newest kubernetes-validate ships."""
    minimum = yaml.safe_load((kit_helpers.CHART / "Chart.yaml").read_text())["kubeVersion"]
    oldest = minimum.lstrip(">=").split("-")[0]
    return sorted({oldest, "1.31.0", kubernetes_validate.utils.latest_version()}, key=lambda v: [int(p) for p in v.split(".")])


@pytest.mark.parametrize("version", kube_versions())
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_manifests_validate_strictly(chart, scenario, version):
    objects = chart.objects(chart.render(SCENARIOS[scenario]))
    assert objects
    for obj in objects:
        kubernetes_validate.validate(obj, version, strict=True)


def test_strict_validation_rejects_unknown_fields(chart, base_values):
    # Guards the check above: a typo in a template would be caught.
    broken = deployment(chart.objects(chart.render(base_values)))
    broken["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {"httpGet": {"path": "/healthz"}}
    with pytest.raises(kubernetes_validate.utils.ValidationError):
        kubernetes_validate.validate(broken, "1.31.0", strict=True)


def test_default_objects(chart, base_values):
    objects = chart.objects(chart.render(base_values))
    assert kinds(objects) == ["ConfigMap", "Deployment", "NetworkPolicy", "PodDisruptionBudget", "Service",
                              "ServiceAccount"]
    for obj in objects:
        assert obj["metadata"]["namespace"] == "telemed"
        assert obj["metadata"]["name"] == "reference-service"


def test_deployment_defaults(chart, base_values):
    objects = chart.objects(chart.render(base_values))
    spec = deployment(objects)["spec"]
    pod = spec["template"]["spec"]
    container = pod["containers"][0]

    assert spec["replicas"] == 2
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    assert [c["topologyKey"] for c in pod["topologySpreadConstraints"]] == [
        "topology.kubernetes.io/zone", "kubernetes.io/hostname"]
    assert pod["topologySpreadConstraints"][0]["whenUnsatisfiable"] == "DoNotSchedule"
    for constraint in pod["topologySpreadConstraints"]:
        assert constraint["labelSelector"]["matchLabels"] == spec["selector"]["matchLabels"]

    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "http"}
    assert container["startupProbe"]["httpGet"] == {"path": "/livez", "port": "http"}
    assert container["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]

    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"] == {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001,
                                      "fsGroup": 10001, "seccompProfile": {"type": "RuntimeDefault"}}
    assert container["securityContext"] == {"runAsNonRoot": True, "allowPrivilegeEscalation": False,
                                            "privileged": False, "readOnlyRootFilesystem": True,
                                            "capabilities": {"drop": ["ALL"]}}
    assert container["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    assert pod["volumes"] == [{"name": "tmp", "emptyDir": {"sizeLimit": "16Mi"}}]
    assert set(container["resources"]) == {"requests", "limits"}
    assert container["image"] == "ghcr.io/telemed-kit/reference-service:0.1.0"
    annotations = spec["template"]["metadata"]["annotations"]
    assert not any(key.startswith(("prometheus.io/", "proxy.istio.io/")) for key in annotations)


def test_grace_period_and_env_come_from_one_value(chart, base_values):
    for grace, delay, expected_delay in [(10, 3, "3s"), (30, 2.5, "2500ms"), (5, 0.5, "500ms")]:
        values = {**base_values, "shutdown": {"gracePeriodSeconds": grace, "delaySeconds": delay}}
        objects = chart.objects(chart.render(values))
        env = kit_helpers.env_from_render(objects)
        assert deployment(objects)["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == grace
        assert env["SHUTDOWN_GRACE_PERIOD"] == f"{grace}s"
        assert env["SHUTDOWN_DELAY"] == expected_delay


def test_config_reaches_the_environment(chart):
    values = SCENARIOS["everything-on"]
    objects = chart.objects(chart.render(values))
    env = kit_helpers.env_from_render(objects)
    assert env == {
        "PORT": "8080",
        "SHUTDOWN_GRACE_PERIOD": "30s",
        "SHUTDOWN_DELAY": "5500ms",
        "METRICS_PORT": "9090",
        "KVSTORE_URL": "https://kvstore.exttest.ehealth.sundhed.dk",
        "AUTH_ISSUER": "https://saml.exttest.ehealth.sundhed.dk/auth/realms/ehealth",
        "LOG_LEVEL": "debug",
        "OTEL_TRACES_SAMPLER_ARG": "0.25",
        "CACHE_DISABLED": "true",
        "OTEL_EXPORTER_ZIPKIN_ENDPOINT": "http://zipkin.istio-system:9411/api/v2/spans",
        "EXTRA": "1",
    }
    assert "KVSTORE_APPLICATION" not in env, "null values leave the kit's default in force"


@pytest.mark.parametrize("config, issuer", [
    # The platform names the store and the token issuer after the same environment.
    ({"KVSTORE_URL": "https://kvstore.inttest.ehealth.sundhed.dk"},
     "https://saml.inttest.ehealth.sundhed.dk/auth/realms/ehealth"),
    ({"KVSTORE_URL": "https://kvstore.preprod.ehealth.sundhed.dk/"},
     "https://saml.preprod.ehealth.sundhed.dk/auth/realms/ehealth"),
    # A value set wins, both realms included.
    ({"KVSTORE_URL": "https://kvstore.prod.ehealth.sundhed.dk",
      "AUTH_ISSUER": "https://saml.prod.ehealth.sundhed.dk/auth/realms/ehealth,"
                     "https://saml.prod.ehealth.sundhed.dk/auth/realms/nemlogin"},
     "https://saml.prod.ehealth.sundhed.dk/auth/realms/ehealth,"
     "https://saml.prod.ehealth.sundhed.dk/auth/realms/nemlogin"),
    # Anything that is not the platform's store names no environment: nothing is guessed.
    ({"KVSTORE_URL": "https://kvstore.example"}, None),
    ({"KVSTORE_URL": "http://kvstore.inttest.ehealth.sundhed.dk"}, None),
    ({"KVSTORE_URL": "https://kvstore.inttest.ehealth.sundhed.dk.evil.example"}, None),
    ({"KVSTORE_URL": "https://kvstore.inttest.ehealth.sundhed.dk/properties"}, None),
])
def test_the_issuer_follows_the_stores_environment_unless_set(chart, config, issuer):
    env = kit_helpers.env_from_render(chart.objects(chart.render({"config": config})))
    assert env.get("AUTH_ISSUER") == issuer


def test_optional_features(chart):
    objects = chart.objects(chart.render(SCENARIOS["everything-on"]))
    spec = deployment(objects)["spec"]
    pod = spec["template"]
    assert "replicas" not in spec, "the HPA owns the replica count"
    hpa = next(o for o in objects if o["kind"] == "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 8)
    assert hpa["spec"]["scaleTargetRef"]["name"] == "reference-service"

    annotations = pod["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == "9090"
    assert annotations["prometheus.io/path"] == "/metrics"
    istio = yaml.safe_load(annotations["proxy.istio.io/config"])
    assert istio == {"holdApplicationUntilProxyStarts": True, "terminationDrainDuration": "30s"}

    container = pod["spec"]["containers"][0]
    assert container["image"] == f"ghcr.io/telemed-kit/reference-service@{DIGEST}"
    assert {"name": "metrics", "containerPort": 9090, "protocol": "TCP"} in container["ports"]
    policy = next(o for o in objects if o["kind"] == "NetworkPolicy")
    ports = [p["port"] for p in policy["spec"]["ingress"][0]["ports"]]
    assert ports[:2] == ["http", "metrics"]


def test_minimal_objects(chart):
    objects = chart.objects(chart.render(SCENARIOS["minimal-objects"]))
    assert kinds(objects) == ["ConfigMap", "Deployment", "Service"]
    pod = deployment(objects)["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "default"
    assert "topologySpreadConstraints" not in pod


def test_config_change_rolls_the_pods(chart, base_values):
    def checksum(values):
        return deployment(chart.objects(chart.render(values)))["spec"]["template"]["metadata"]["annotations"][
            "checksum/config"]

    changed = copy.deepcopy(base_values)
    changed["config"]["LOG_LEVEL"] = "debug"
    assert checksum(base_values) == checksum(copy.deepcopy(base_values))
    assert checksum(base_values) != checksum(changed)


def test_notes_tell_how_to_roll_back(chart, base_values):
    notes = next(text for path, text in chart.render(base_values).items() if path.endswith("NOTES.txt"))
    assert "helm -n telemed rollback reference-service" in notes
    assert "rollout status deployment/reference-service" in notes


# Checks that the chart may skip, each with its reason. Every render for checkov pins the image by digest, as
# production deploys do (docs/operations.md): a render without one fails CKV_K8S_43 on the values, not on the
# chart, and CKV_K8S_15 (pull policy Always) passes for digest references.
CHECKOV_SKIPS: dict[str, str] = {}


def test_checkov_passes_every_render(chart, tmp_path):
    for name, values in SCENARIOS.items():
        values = copy.deepcopy(values)
        values.setdefault("image", {})["digest"] = DIGEST
        write_render(chart, values, tmp_path / name)
    # A negative control in the same run: the same manifests with a writable root filesystem must fail.
    control = tmp_path / "negative-control"
    write_render(chart, SCENARIOS["defaults"] | {"image": {"digest": DIGEST}}, control)
    path = next(control.rglob("deployment.yaml"))
    broken = yaml.safe_load(path.read_text())
    broken["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesystem"] = False
    path.write_text(yaml.safe_dump(broken))

    report = run_checkov(tmp_path)
    failed = report["results"]["failed_checks"]
    outside_control = [(f["check_id"], f["file_path"]) for f in failed if "negative-control" not in f["file_path"]]
    assert outside_control == [], json.dumps(outside_control)
    assert {f["check_id"] for f in failed} == {"CKV_K8S_22"}, "the negative control must fail exactly one check"
    assert report["summary"]["passed"] > 100


def write_render(chart, values: dict, directory: Path) -> None:
    directory.mkdir(parents=True)
    for path, text in chart.render(values).items():
        if path.endswith(".yaml") and text.strip():
            (directory / Path(path).name).write_text(text)


def run_checkov(directory: Path) -> dict:
    command = [str(kit_helpers.ROOT / ".venv/checkov/bin/checkov"), "-d", str(directory), "--framework",
               "kubernetes", "--skip-download", "--output", "json"]
    if CHECKOV_SKIPS:
        command += ["--skip-check", ",".join(CHECKOV_SKIPS)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode in (0, 1), result.stderr
    report = json.loads(result.stdout)
    return report[0] if isinstance(report, list) else report
