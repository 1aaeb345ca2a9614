"""The services generated from template/ (by scripts/test-template.sh, as GENERATED_DIR/<name>) hold no drift
from the kit's own Dockerfile and chart, render with the real Helm engine, and differ between variants exactly
as chosen.

The variants (see scripts/test-template.sh):
- demo-svc: the defaults: key-value store, token verification (auth) and chart, port 8080, kit from a local path;
- lean-svc: none of them (auth=false), port 9000;
- chart-svc: chart and token verification without the key-value store, port 8081 (only generated and rendered
  here, never built);
- git-svc: the defaults with the kit from its git repository (only generated).
"""

from __future__ import annotations

import copy
import json
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
KVSTORE_URL = "https://kvstore.inttest.ehealth.sundhed.dk"
KVSTORE_KEYS = ("KVSTORE_URL", "KVSTORE_APPLICATION")
AUTH_ISSUER = "https://saml.inttest.ehealth.sundhed.dk/auth/realms/ehealth"
# Chart variables derived from structural values, as in tests/chart/test_contract.py.
STRUCTURAL_VARIABLES = {"PORT", "SHUTDOWN_GRACE_PERIOD", "SHUTDOWN_DELAY", "METRICS_PORT"}

# Lines of the generated Dockerfile allowed to differ from the kit's (after the service name is replaced by
# reference-service), by their start, and why.
DOCKERFILE_DIFFERENT = {
    "      org.opencontainers.image.description=": "the service's own description",
    "      org.opencontainers.image.source=": "the service's own repository",
    "# `--locked` builds exactly Cargo.lock. No credentials are needed:": "the kit comes from its git repository",
}
# Lines only the generated Dockerfile has.
DOCKERFILE_EXTRA = {
    "# telemed-kit's own Dockerfile with this service's name (kept identical by the kit's template test); paths in",
    "# comments refer to files in the telemed-kit repository.",
}
# values.yaml keys whose defaults are the service's own; every other key and default is the kit's.
VALUES_OWN = ("image.repository", "containerPort", "config.USER_AGENT", "podLabels")
# Variables of the kit's chart that the reference service reads and a generated service does not.
REFERENCE_SERVICE_OWN = ("SETTINGS_WRITE_PRIVILEGE",)


def service(generated: Path, name: str) -> Path:
    path = generated / name
    assert path.is_dir(), f"{name} was not generated"
    return path


def load_yaml(path: Path):
    return yaml.safe_load(path.read_text())


def delete(values: dict, dotted: str) -> None:
    *parents, last = dotted.split(".")
    for part in parents:
        values = values[part]
    values.pop(last, None)


# --- no drift from the kit ---------------------------------------------------------------------------------------


def test_dockerfile_is_the_kits_but_for_documented_lines(generated):
    kit = (ROOT / "Dockerfile").read_text().splitlines()
    ours = (service(generated, "demo-svc") / "Dockerfile").read_text().replace("demo-svc", "reference-service")
    ours = [line for line in ours.splitlines() if line not in DOCKERFILE_EXTRA]
    assert len(ours) == len(kit), "lines were added to or removed from one of the two Dockerfiles"
    for number, (mine, theirs) in enumerate(zip(ours, kit), start=1):
        if mine == theirs:
            continue
        allowed = [start for start in DOCKERFILE_DIFFERENT if mine.startswith(start) and theirs.startswith(start)]
        assert allowed, f"Dockerfile line {number} drifted:\n  kit:      {theirs}\n  template: {mine}"


def test_dockerfile_for_another_port_exposes_and_sets_it(generated):
    default = (service(generated, "demo-svc") / "Dockerfile").read_text().replace("demo-svc", "lean-svc")
    lean = (service(generated, "lean-svc") / "Dockerfile").read_text()
    expected = default.replace("EXPOSE 8080\n", "EXPOSE 9000\n# The kit listens on 8080 unless PORT says otherwise.\n"
                               "ENV PORT=9000\n")
    assert lean == expected


@pytest.mark.parametrize("name", [".dockerignore", "clippy.toml"])
def test_file_is_the_kits(generated, name):
    assert (service(generated, "demo-svc") / name).read_bytes() == (ROOT / name).read_bytes()


@pytest.mark.parametrize("variant", ["demo-svc", "chart-svc"])
def test_chart_templates_are_the_kits_byte_for_byte(generated, variant):
    kit = ROOT / "chart" / "templates"
    ours = service(generated, variant) / "chart" / "templates"
    assert sorted(p.name for p in ours.iterdir()) == sorted(p.name for p in kit.iterdir())
    for template in kit.iterdir():
        assert (ours / template.name).read_bytes() == template.read_bytes(), f"chart/templates/{template.name}"


def test_schema_is_the_kits(generated):
    kit = json.loads((ROOT / "chart" / "values.schema.json").read_text())
    for key in REFERENCE_SERVICE_OWN:
        del kit["properties"]["config"]["properties"][key]
    assert json.loads((service(generated, "demo-svc") / "chart" / "values.schema.json").read_text()) == kit
    without_kvstore = copy.deepcopy(kit)
    del without_kvstore["properties"]["config"]["required"]
    for key in KVSTORE_KEYS:
        del without_kvstore["properties"]["config"]["properties"][key]
    assert json.loads((service(generated, "chart-svc") / "chart" / "values.schema.json").read_text()) == without_kvstore


@pytest.mark.parametrize("variant", ["demo-svc", "chart-svc"])
def test_values_are_the_kits_but_for_the_services_own_defaults(generated, variant):
    kit = load_yaml(ROOT / "chart" / "values.yaml")
    ours = load_yaml(service(generated, variant) / "chart" / "values.yaml")
    for key in VALUES_OWN:
        delete(kit, key)
        delete(ours, key)
    for key in REFERENCE_SERVICE_OWN:
        delete(kit, f"config.{key}")
    if variant == "chart-svc":
        for key in KVSTORE_KEYS:
            delete(kit, f"config.{key}")
    assert ours == kit


def test_chart_yaml_keeps_the_kits_api_and_kubernetes_versions(generated):
    kit = load_yaml(ROOT / "chart" / "Chart.yaml")
    ours = load_yaml(service(generated, "demo-svc") / "chart" / "Chart.yaml")
    for key in ("apiVersion", "type", "kubeVersion", "appVersion"):
        assert ours[key] == kit[key], key
    assert ours["name"] == "demo-svc"


def test_ehealth_values_have_the_kits_keys(generated):
    kit = load_yaml(ROOT / "chart" / "ehealth-values.example.yaml")
    ours = load_yaml(service(generated, "demo-svc") / "deploy" / "ehealth-values.yaml")
    assert set(ours) == set(kit)
    kit_env = {entry["name"] for entry in kit["env"]}
    our_env = {entry["name"]: entry["value"] for entry in ours["env"]}
    assert set(our_env) == kit_env | {"USER_AGENT", "AUTH_ISSUER"}
    assert our_env["AUTH_ISSUER"] == AUTH_ISSUER
    lean = load_yaml(service(generated, "lean-svc") / "deploy" / "ehealth-values.yaml")
    assert not [entry["name"] for entry in lean["env"] if entry["name"].startswith("AUTH_")]


def test_the_kit_comes_from_the_workspace_repository_unless_a_path_is_given(generated):
    repository = tomllib.loads((ROOT / "Cargo.toml").read_text())["workspace"]["package"]["repository"]
    for section in ("dependencies", "dev-dependencies"):
        git = tomllib.loads((service(generated, "git-svc") / "Cargo.toml").read_text())[section]["telemed-kit"]
        assert git["git"] == repository, section
        local = tomllib.loads((service(generated, "demo-svc") / "Cargo.toml").read_text())[section]["telemed-kit"]
        assert Path(local["path"]) == ROOT / "crates" / "telemed-kit", section
    # The stand-ins of the key-value store and the token issuer, crates of the same repository, come the same way,
    # for the tests and local runs only.
    git = tomllib.loads((service(generated, "git-svc") / "Cargo.toml").read_text())
    local = tomllib.loads((service(generated, "demo-svc") / "Cargo.toml").read_text())
    lean = tomllib.loads((service(generated, "lean-svc") / "Cargo.toml").read_text())
    for standin in ("kvstore-standin", "issuer-standin"):
        assert git["dev-dependencies"][standin]["git"] == repository, standin
        assert standin not in git["dependencies"], standin
        assert Path(local["dev-dependencies"][standin]["path"]).resolve() == ROOT / "crates" / standin
        assert standin not in lean["dev-dependencies"], standin


@pytest.mark.parametrize("variant", ["demo-svc", "lean-svc"])
def test_the_generated_lock_holds_only_the_workspaces_versions(generated, variant):
    """scripts/test-template.sh copies the workspace's Cargo.lock in and lets cargo trim it: nothing is resolved
    anew, so the generated service builds and is tested against exactly the versions the kit is."""
    def packages(lock: Path) -> set[tuple[str, str]]:
        return {(p["name"], p["version"]) for p in tomllib.loads(lock.read_text())["package"]}

    ours = packages(service(generated, variant) / "Cargo.lock") - {(variant, "0.1.0")}
    assert ours <= packages(ROOT / "Cargo.lock"), sorted(ours - packages(ROOT / "Cargo.lock"))


# --- the variants ------------------------------------------------------------------------------------------------


def test_variants_hold_exactly_the_chosen_parts(generated):
    demo, lean = service(generated, "demo-svc"), service(generated, "lean-svc")
    assert (demo / "chart").is_dir() and (demo / "examples" / "kvstore-standin.rs").is_file()
    assert (demo / "examples" / "issuer-standin.rs").is_file()
    assert not (lean / "chart").exists() and not (lean / "examples").exists()
    assert "KvStore" in (demo / "src" / "main.rs").read_text()
    assert "kvstore" not in (lean / "src" / "main.rs").read_text().lower()
    # The tests (tests/service.rs, run by scripts/test.sh) prove the wiring works; these lines say it is wired
    # as documented.
    main = (demo / "src" / "main.rs").read_text()
    for part in ("AuthSettings::from_env(", ".route_layer(from_extractor::<Caller>())", ".auth(auth)",
                 "RequirePrivilegeLayer::new(WRITE_PRIVILEGE)", "auth.spawn_key_refresh()",
                 ".check(auth.readiness_check())"):
        assert part in main, part
    run_local = (demo / "scripts" / "run-local.sh").read_text()
    assert '"$target/examples/issuer-standin" &' in run_local
    assert "AUTH_ISSUER=" in run_local
    # auth=false: no trace of token verification anywhere.
    for path in ("src/main.rs", "tests/service.rs", "Cargo.toml", "scripts/run-local.sh", ".github/workflows/ci.yml",
                 "README.md", "deploy/ehealth-values.yaml"):
        text = (lean / path).read_text()
        for word in ("auth", "issuer", "token", "privilege"):
            assert word not in text.lower(), f"lean-svc {path} mentions {word}"
    lean_env = {e["name"] for e in load_yaml(lean / "deploy" / "ehealth-values.yaml")["env"]}
    assert not lean_env & set(KVSTORE_KEYS)
    for variant in (demo, lean):
        leftovers = [
            str(path.relative_to(variant))
            for path in variant.rglob("*")
            if path.is_file() and "templates" not in path.parts and "{%" in path.read_text(errors="replace")
        ]
        assert not leftovers, f"unrendered Liquid in {leftovers}"


# --- the generated chart renders ---------------------------------------------------------------------------------


def objects_of(chart, path: Path, values: dict, release: str) -> list[dict]:
    return chart.objects(chart.render(values, name=release, namespace="telemed", chart=path))


def env_from_render(objects: list[dict]) -> dict[str, str]:
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    config_map = next(o for o in objects if o["kind"] == "ConfigMap")
    assert container["envFrom"] == [{"configMapRef": {"name": config_map["metadata"]["name"]}}]
    return dict(config_map["data"])


@pytest.mark.parametrize(
    ("variant", "values", "port", "kvstore"),
    [
        ("demo-svc", {"config": {"KVSTORE_URL": KVSTORE_URL, "AUTH_ISSUER": AUTH_ISSUER}}, 8080, True),
        ("chart-svc", {"config": {"AUTH_ISSUER": AUTH_ISSUER}}, 8081, False),
    ],
)
def test_generated_chart_renders_lints_and_matches_the_ehealth_values(chart, generated, variant, values, port, kvstore):
    path = service(generated, variant)
    assert chart.lint(values, chart=path / "chart") == []
    objects = objects_of(chart, path / "chart", values, variant)
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    pod = deployment["spec"]["template"]
    container = pod["spec"]["containers"][0]
    assert container["image"] == f"registry.invalid/{variant}:0.1.0"
    assert container["ports"][0]["containerPort"] == port
    assert pod["metadata"]["labels"]["team"] == "telemed-team"
    env = env_from_render(objects)
    assert env["PORT"] == str(port)
    assert env["USER_AGENT"] == f"CGI-{variant}/0.1.0"
    assert ("KVSTORE_URL" in env) == kvstore
    assert env["AUTH_ISSUER"] == AUTH_ISSUER

    # The platform chart's values describe the same deployment: port, probe paths and environment.
    ehealth = load_yaml(path / "deploy" / "ehealth-values.yaml")
    platform_env = {entry["name"]: entry["value"] for entry in ehealth["env"]}
    config = {k: v for k, v in platform_env.items() if k not in STRUCTURAL_VARIABLES}
    same = objects_of(chart, path / "chart", {"config": config}, variant)
    same_container = next(o for o in same if o["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert ehealth["containerPort"] == same_container["ports"][0]["containerPort"]
    assert ehealth["readinessProbe"]["httpPath"] == same_container["readinessProbe"]["httpGet"]["path"]
    assert ehealth["livenessProbe"]["httpPath"] == same_container["livenessProbe"]["httpGet"]["path"]
    assert env_from_render(same) == platform_env


def test_the_key_value_store_url_is_required_exactly_when_the_service_uses_the_store(chart, generated):
    with pytest.raises(chart.ChartError, match="KVSTORE_URL"):
        chart.render({}, name="demo-svc", chart=service(generated, "demo-svc") / "chart")
    with pytest.raises(chart.ChartError, match="KVSTORE_URL"):
        chart.render({"config": {"KVSTORE_URL": KVSTORE_URL}}, name="chart-svc",
                     chart=service(generated, "chart-svc") / "chart")


@pytest.mark.parametrize("variant", ["demo-svc", "lean-svc"])
def test_ci_example_runs_the_services_own_checks_then_builds_the_image(generated, variant):
    workflow = load_yaml(service(generated, variant) / ".github" / "workflows" / "ci.yml")
    test_steps = [step.get("run", "") for step in workflow["jobs"]["test"]["steps"]]
    assert "bash scripts/test.sh" in test_steps
    uses = [step.get("uses", "") for step in workflow["jobs"]["test"]["steps"]]
    assert not any("helm" in use for use in uses), "scripts/test.sh brings Helm's engine itself (PyPI)"
    script = (service(generated, variant) / "scripts" / "test.sh").read_text()
    assert ("helm-python-sdk" in script) == (variant == "demo-svc"), "chart checks only with a chart"
    assert "skipped" not in script, "no check of a generated service is ever skipped"
    image = workflow["jobs"]["image"]
    assert image["needs"] == "test"
    assert any("docker build" in step.get("run", "") for step in image["steps"])
    # scripts/test-template.sh runs this job's checker step on the generated service.
    steps = workflow["jobs"]["conformance"]["steps"]
    run = next(step for step in steps if step.get("name") == "Platform rules (telemed-conform)")["run"]
    checker = [line for line in run.splitlines() if line.startswith("telemed-conform ")]
    assert len(checker) == 1 and checker[0].endswith(f"-- target/debug/{variant}"), run
    build = next(step["run"] for step in steps if step.get("name", "").startswith("Build the service"))
    if variant == "demo-svc":
        # Beside the issuer stand-in, built with the service, whose tokens name the AUTH_ISSUER given.
        assert "--example issuer-standin" in build
        assert run.startswith("PORT=$ISSUER_PORT target/debug/examples/issuer-standin &\n"), run
        assert "/dev/tcp/127.0.0.1/$ISSUER_PORT" in run, "the service starts once the stand-in listens"
        assert "--env AUTH_ISSUER=http://localhost:$ISSUER_PORT/auth/realms/ehealth " in checker[0]
    else:
        assert "issuer" not in run and "AUTH_" not in run, run
