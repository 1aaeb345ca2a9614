"""Fixtures for the chart tests: the renderer, base values, the real service binary."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import kit_helpers

KVSTORE_URL = "https://kvstore.inttest.ehealth.sundhed.dk"


@pytest.fixture(scope="session")
def chart():
    """scripts/render-chart.py: render, lint, objects, values_table."""
    return kit_helpers.load_render_chart()


@pytest.fixture
def base_values() -> dict:
    """The default values plus the one required value."""
    return {"config": {"KVSTORE_URL": KVSTORE_URL}}


@pytest.fixture(scope="session")
def service_binary() -> Path:
    """The reference service built by scripts/test-chart.sh (REFERENCE_SERVICE_BIN), in a private netns."""
    binary = Path(os.environ.get("REFERENCE_SERVICE_BIN", kit_helpers.ROOT / "target/debug/reference-service"))
    if not binary.is_file():
        pytest.fail(f"{binary} is missing: run scripts/test-chart.sh, which builds it")
    if not kit_helpers.in_private_netns():
        pytest.fail("these tests bind the service's default port: run them through scripts/test-chart.sh, "
                    "which gives them a network namespace of their own")
    return binary
