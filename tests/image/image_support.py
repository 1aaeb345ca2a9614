"""podman helpers and constants shared by the image tests and their conftest."""

from __future__ import annotations

import functools
import os
import shlex
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "chart"))
import kit_helpers  # noqa: E402

ROOT = kit_helpers.ROOT
# Tagged per test run, so that two runs on one machine never remove each other's images.
IMAGE = f"localhost/telemed-kit-test/reference-service:run-{os.getpid()}"
BASE = f"localhost/telemed-kit-test/base:run-{os.getpid()}"
# Lines for the "image measurements" section of the test report (image size, memory, CPU).
MEASUREMENTS: list[str] = []


def podman(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    result = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
    return result


@functools.cache
def jwks() -> kit_helpers.access_tokens.JwksServer:
    """The key set the containers' service trusts, served for the whole session on the tests' own loopback (the
    containers share the tests' network namespace: `--network host` inside `unshare --net`)."""
    return kit_helpers.access_tokens.JwksServer()


def podman_run_args() -> list[str]:
    """Sandbox-only extras for `podman run` (see scripts/test-image.sh)."""
    return shlex.split(os.environ.get("TEST_PODMAN_ULIMITS", ""))
