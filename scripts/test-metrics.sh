#!/usr/bin/env bash
# Metrics end to end: the real binaries' /metrics output passes `promtool check metrics` (Debian's prometheus
# package) and the Prometheus Python client's text parser; counters move with requests, cache use and shutdown;
# label cardinality stays bounded with many distinct raw paths.
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"
cd "$ROOT"
ensure_apt prometheus
ensure_venv scripts/requirements-metrics.txt scripts/requirements-auth.txt
cargo build --locked -q -p reference-service -p kvstore-standin -p kit-testbed
TARGET_DIR=$(cargo_target_dir)
export TARGET_DIR
"$VENV/bin/python" -m pytest -q tests/metrics "$@"
