#!/usr/bin/env bash
# Chart tests: render with Helm's own engine, lint strict, validate against the Kubernetes schemas, checkov,
# schema rejections, the contract between kit, Dockerfile and chart, and the previous release's values.
# Installs what it needs (cached in .venv), builds the reference service, and ends with pytest's summary line.
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"
cd "$ROOT"

step "tools"
ensure_apt iproute2 util-linux
ensure_venv scripts/requirements-chart.txt scripts/requirements-auth.txt
VENV="$ROOT/.venv/checkov" ensure_venv scripts/requirements-checkov.txt

step "build reference-service"
cargo build --locked -p reference-service
target_dir=$(cargo_target_dir)
export REFERENCE_SERVICE_BIN="$target_dir/debug/reference-service"

step "chart tests"
# The tests start the real service on its default port, 8080: a network namespace of their own (loopback only)
# keeps them apart from anything else on the machine and from each other's runs.
# shellcheck disable=SC2016 # expanded by the inner sh, which gets the arguments after the script
exec unshare --net -- sh -c 'ip link set lo up && exec "$0" -m pytest -p no:cacheprovider -q tests/chart' \
  "$VENV/bin/python"
