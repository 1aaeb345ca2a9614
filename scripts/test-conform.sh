#!/usr/bin/env bash
# Conformance: telemed-conform (crates/conform) run against real services. The reference service, the
# existing-service example, the kit's testbed and a plain Python service (tests/conform/service.py) pass every
# check; each misbehaving variant (testbed faults, Python faults, a chart without the rules) fails exactly the
# checks of its broken rule. Installs what it needs (cached), and ends with pytest's summary line.
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"
cd "$ROOT"

step "tools"
ensure_apt iproute2 util-linux
ensure_venv scripts/requirements-chart.txt scripts/requirements-auth.txt

step "build the checker and the services it checks"
cargo build --locked -p telemed-conform -p reference-service -p kit-testbed -p example-existing-service
target_dir=$(cargo_target_dir)
export TELEMED_CONFORM_BIN="$target_dir/debug/telemed-conform"
export REFERENCE_SERVICE_BIN="$target_dir/debug/reference-service"
export KIT_TESTBED_BIN="$target_dir/debug/kit-testbed"
export EXISTING_SERVICE_BIN="$target_dir/debug/existing-service"
export CHART_PYTHON="$VENV/bin/python"

step "conformance tests"
# A network namespace of their own (loopback only): the services bind free ports without meeting anything else.
# shellcheck disable=SC2016 # expanded by the inner sh, which gets the arguments after the script
exec unshare --net -- sh -c 'ip link set lo up && exec "$0" -m pytest -p no:cacheprovider -q tests/conform' \
  "$VENV/bin/python"
