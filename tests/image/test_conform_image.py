"""telemed-conform --image on the image built here: every check passes on it; an image whose user is root fails
the user check alone; one that starts the service from a shell (busybox as /bin/sh, PID 1) fails the PID 1 check
and every shutdown check that needs SIGTERM to reach the service; one that writes outside /tmp fails the
read-only check. scripts/test-image.sh builds the checker and passes its path in TELEMED_CONFORM_BIN;
the sandbox's podman extras reach the checker through TELEMED_CONFORM_PODMAN_ARGS."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid

import pytest

import image_support
from image_support import podman
from kit_helpers import access_tokens

SERVICE_CHECKS = {
    "probes.liveness-up", "probes.readiness-up", "logs.model", "logs.no-secrets", "logs.bad-request-alert",
    "propagation.b3-multi", "propagation.b3-single", "propagation.forwarded-headers", "propagation.user-agent",
    "propagation.log-id", "shutdown.readiness-503", "shutdown.liveness-200", "shutdown.serves-new-connections",
    "shutdown.exit-0", "shutdown.second-sigterm", "shutdown.stuck-request",
}
IMAGE_CHECKS = {"image.user", "image.read-only", "image.capabilities", "image.pid1", "image.no-shell"}


def caller() -> list[str]:
    """The reference service verifies tokens: it trusts the key set served by this session (the container shares
    the tests' network), and the checker sends one of its tokens."""
    env = access_tokens.service_env(image_support.jwks())
    return [*(arg for name, value in env.items() for arg in ("--env", f"{name}={value}")),
            "--header", f"Authorization: Bearer {access_tokens.token()}"]


def conform_image(image: str, *extra: str) -> tuple[int, dict]:
    checker = os.environ.get("TELEMED_CONFORM_BIN", "")
    if not os.path.isfile(checker):
        pytest.fail("TELEMED_CONFORM_BIN is not set to the built checker: run scripts/test-image.sh")
    env = dict(os.environ, TELEMED_CONFORM_PODMAN_ARGS=os.environ.get("TEST_PODMAN_ULIMITS", ""))
    result = subprocess.run(
        [checker, "--format", "json", "--image", image, "--upstream-env", "KVSTORE_URL",
         "--trigger", "/settings/theme", "--env", "CACHE_DISABLED=true",
         *caller(), *extra],
        capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode in (0, 1), result.stderr
    return result.returncode, json.loads(result.stdout)


def describe(report: dict) -> str:
    return "\n".join(f"{c['status']} {c['id']}: {c['detail']}" for c in report["checks"] if c["status"] != "skip")


def test_the_image_passes_every_check(image):
    code, report = conform_image(image)
    passed = {check["id"] for check in report["checks"] if check["status"] == "pass"}
    assert passed >= SERVICE_CHECKS | IMAGE_CHECKS, describe(report)
    assert code == 0, describe(report)
    no_shell = next(c for c in report["checks"] if c["id"] == "image.no-shell")
    assert not no_shell["detail"].startswith("warning"), no_shell


def test_an_image_running_as_root_fails_the_user_check(image, tmp_path):
    root_image = f"localhost/telemed-kit-test/root-user:{uuid.uuid4().hex[:8]}"
    (tmp_path / "Containerfile").write_text(f"FROM {image}\nUSER 0:0\n")
    podman("build", "--pull=never", "--layers=false", "-t", root_image, str(tmp_path))
    try:
        code, report = conform_image(root_image)
    finally:
        podman("rmi", "--force", root_image, check=False)
    failed = {c["id"] for c in report["checks"] if c["status"] == "fail"}
    assert failed == {"image.user"}, describe(report)
    user = next(c for c in report["checks"] if c["id"] == "image.user")
    assert user["rule"] == "R5" and "root" in user["detail"]
    assert code == 1


def conform_shell_image(image: str, tmp_path, command: str, *extra: str) -> tuple[int, dict]:
    """Checks `image` with busybox as /bin/sh and `command` run by it as the entrypoint."""
    busybox = shutil.which("busybox")
    if busybox is None:
        pytest.fail("busybox is missing: scripts/test-image.sh installs busybox-static")
    shutil.copy(busybox, tmp_path / "busybox")
    shell_image = f"localhost/telemed-kit-test/shell:{uuid.uuid4().hex[:8]}"
    (tmp_path / "Containerfile").write_text(
        f"FROM {image}\nCOPY busybox /bin/sh\nENTRYPOINT {json.dumps(['/bin/sh', '-c', command])}\n")
    podman("build", "--pull=never", "--layers=false", "-t", shell_image, str(tmp_path))
    try:
        return conform_image(shell_image, *extra)
    finally:
        podman("rmi", "--force", shell_image, check=False)


def test_an_image_that_starts_the_service_from_a_shell_fails_pid1_and_the_shutdown(image, tmp_path):
    # `; exit $?` keeps the shell from exec-ing the service: it stays PID 1, where SIGTERM stops.
    code, report = conform_shell_image(image, tmp_path, "/usr/local/bin/service; exit $?", "--grace-period", "3s")
    failed = {c["id"] for c in report["checks"] if c["status"] == "fail"}
    assert failed == {"image.pid1", "shutdown.readiness-503", "shutdown.exit-0", "shutdown.second-sigterm",
                      "shutdown.stuck-request"}, describe(report)
    details = {c["id"]: c["detail"] for c in report["checks"]}
    assert "shell" in details["image.pid1"], details["image.pid1"]
    assert details["image.no-shell"].startswith("warning: "), details["image.no-shell"]
    assert code == 1


def test_an_image_that_writes_outside_tmp_fails_the_read_only_check(image, tmp_path):
    code, report = conform_shell_image(image, tmp_path, "echo started > /state && exec /usr/local/bin/service",
                                       "--startup-timeout", "5s")
    failed = {c["id"] for c in report["checks"] if c["status"] == "fail"}
    assert {"image.read-only", "probes.readiness-up"} <= failed and "image.user" not in failed, describe(report)
    details = {c["id"]: c["detail"] for c in report["checks"]}
    assert "Read-only file system" in details["probes.readiness-up"], details["probes.readiness-up"]
    assert code == 1
