"""The Dockerfile itself: hadolint and checkov clean (each checkov skip justified), and the rules that the image
build cannot show here because the builder stage is not run (base images cannot be pulled on these machines)."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from image_support import ROOT

DOCKERFILE = ROOT / "Dockerfile"
TEXT = DOCKERFILE.read_text()


def stage(name: str) -> str:
    """The instructions of one stage, up to the next FROM."""
    start = TEXT.index(f"AS {name}")
    following = TEXT.find("\nFROM ", start)
    return TEXT[start:] if following < 0 else TEXT[start:following]


def arg_default(name: str) -> str:
    match = re.search(rf"^ARG {name}=(\S+)$", TEXT, flags=re.MULTILINE)
    assert match, f"ARG {name} has no default"
    return match.group(1)


def test_hadolint_finds_nothing():
    result = subprocess.run([str(ROOT / ".venv/bin/hadolint"), "--no-color", str(DOCKERFILE)],
                            capture_output=True, text=True)
    assert (result.returncode, result.stdout) == (0, ""), result.stdout + result.stderr


def test_hadolint_can_fail(tmp_path):
    # Guards the check above: an unpinned, root-running Dockerfile is reported.
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian\nRUN apt-get install -y curl\n")
    result = subprocess.run([str(ROOT / ".venv/bin/hadolint"), "--no-color", str(bad)], capture_output=True, text=True)
    assert result.returncode != 0 and "DL3006" in result.stdout


# Checkov checks the Dockerfile skips, each with the reason written next to the skip in the Dockerfile.
EXPECTED_SKIPS = {"CKV_DOCKER_2", "CKV_DOCKER_7"}


def test_checkov_passes_with_justified_skips_only():
    result = subprocess.run(
        [str(ROOT / ".venv/checkov/bin/checkov"), "-f", str(DOCKERFILE), "--framework", "dockerfile",
         "--skip-download", "--output", "json"],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert report["summary"]["failed"] == 0
    assert report["summary"]["passed"] > 20
    skipped = report["results"]["skipped_checks"]
    assert {check["check_id"] for check in skipped} == EXPECTED_SKIPS
    for check in skipped:
        reason = check["check_result"]["suppress_comment"]
        assert len(reason) > 20, f"{check['check_id']} needs a reason"


def test_base_image_arguments_carry_tags_and_matching_debian_releases():
    builder, base = arg_default("BUILDER_IMAGE"), arg_default("BASE_IMAGE")
    for image in (builder, base):
        assert re.search(r":[\w][\w.-]*$", image.split("/")[-1]), f"{image} needs an explicit tag"
    assert re.search(r":1\.95(\.\d+)?-", builder), "the builder is the project's toolchain, rust 1.95"
    # The binary links the builder's glibc: the builder's Debian release must be the base's.
    releases = {"bookworm": "debian12", "trixie": "debian13"}
    (codename,) = [name for name in releases if name in builder]
    assert releases[codename] in base


def test_builder_builds_locked_with_cached_dependencies():
    builder = stage("builder")
    assert "ARG BIN=reference-service" in builder
    assert "ARG PACKAGE=${BIN}" in builder
    assert 'cargo build --release --locked --package "${PACKAGE}" --bin "${BIN}"' in builder
    assert "--mount=type=cache,target=/usr/local/cargo/registry" in builder
    assert "--mount=type=cache,target=/src/target" in builder
    assert not re.search(r"(?i)(token|password|secret)\s*=", TEXT), "no credentials in build args or env"


def test_runtime_stage_needs_no_shell():
    runtime = stage("runtime")
    assert not re.search(r"^RUN ", runtime, flags=re.MULTILINE), "the base has no shell to run anything with"
    assert re.search(r'^ENTRYPOINT \["/usr/local/bin/service"\]$', runtime, flags=re.MULTILINE), (
        "exec form: the binary is PID 1 and receives SIGTERM itself")
    assert re.findall(r"^COPY --from=(\S+)", runtime, flags=re.MULTILINE) == ["builder", "builder"], (
        "everything comes from the builder stage, which the tests replace")
    assert re.search(r"^USER 10001:10001$", runtime, flags=re.MULTILINE)
    labels = set(re.findall(r"org\.opencontainers\.image\.(\w+)=", runtime))
    assert {"source", "version", "revision", "licenses"} <= labels


@pytest.mark.parametrize("pattern", [".git", "target", ".venv", "*.pem", ".env"])
def test_build_context_leaves_out(pattern):
    assert pattern in (ROOT / ".dockerignore").read_text().splitlines()
