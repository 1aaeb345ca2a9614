"""Fixtures for the telemetry tests: one upstream, one Zipkin sink and the service processes, per session.

Run through scripts/test-telemetry.sh, which builds the service and gives the run a network namespace of its
own. Tests marked `after_all` run last, once every other test has made its requests (the log-model checks
read everything the services wrote).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from telemetry_support import ROOT, Services, Upstream, ZipkinSink, access_tokens


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "after_all: run after every other test of the session")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: item.get_closest_marker("after_all") is not None)


@pytest.fixture(scope="session")
def binary() -> Path:
    binary = Path(os.environ.get("REFERENCE_SERVICE_BIN", ROOT / "target/debug/reference-service"))
    if not binary.is_file():
        pytest.fail(f"{binary} is missing: run scripts/test-telemetry.sh, which builds it")
    return binary


@pytest.fixture(scope="session")
def upstream() -> Upstream:
    server = Upstream()
    yield server
    server.close()


@pytest.fixture(scope="session")
def sink() -> ZipkinSink:
    server = ZipkinSink()
    yield server
    server.close()


@pytest.fixture(scope="session")
def jwks() -> access_tokens.JwksServer:
    server = access_tokens.JwksServer()
    yield server
    server.close()


@pytest.fixture(scope="session")
def services(binary: Path, upstream: Upstream, sink: ZipkinSink, jwks: access_tokens.JwksServer) -> Services:
    farm = Services(binary, upstream, sink, jwks)
    yield farm
    farm.stop_all()
