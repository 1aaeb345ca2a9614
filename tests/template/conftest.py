"""Fixtures for the template tests: the services scripts/test-template.sh generated, and the chart renderer."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def generated() -> Path:
    """The directory holding the generated services (GENERATED_DIR, set by scripts/test-template.sh)."""
    if "GENERATED_DIR" not in os.environ:
        pytest.fail("run these tests through scripts/test-template.sh, which generates the services first")
    return Path(os.environ["GENERATED_DIR"])


@pytest.fixture(scope="session")
def chart():
    """scripts/render-chart.py as a module (its file name has a dash)."""
    spec = importlib.util.spec_from_file_location("render_chart", ROOT / "scripts" / "render-chart.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module
