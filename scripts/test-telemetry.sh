#!/usr/bin/env bash
# Telemetry end to end: the reference service as a real process between a Python caller and a Python upstream,
# B3 interop with OpenTelemetry Python's propagator, Zipkin export to a local sink validated against the Zipkin
# v2 schema, forwarded headers, the log model of every line the services wrote, and planted secrets.
# Installs what it needs (cached in .venv), builds the service (debug), and ends with pytest's summary line.
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"
cd "$ROOT"

step "tools"
ensure_apt iproute2 util-linux
ensure_venv scripts/requirements-telemetry.txt scripts/requirements-auth.txt

step "build reference-service"
cargo build --locked -p reference-service
target_dir=$(cargo_target_dir)
export REFERENCE_SERVICE_BIN="$target_dir/debug/reference-service"

step "Rust process suites, every stdout line copied for the log-model checks"
# telemed_kit::testing::ServiceProcess copies each process's stdout into this directory; the pytest suite
# then checks every line of it against the logging model, not only the lines the Rust tests look at.
rust_stdout="$target_dir/telemetry-rust-stdout"
rm -rf "$rust_stdout" && mkdir -p "$rust_stdout"
TELEMED_KIT_TEST_STDOUT_DIR="$rust_stdout" cargo test --locked -p kit-testbed --test lifecycle
export RUST_SUITE_STDOUT_DIR="$rust_stdout"

step "telemetry tests"
# A network namespace of its own (loopback only): the services, the upstream and the Zipkin sink meet nothing
# else on the machine, and nothing else can take the ports the tests pick.
# Arguments go to pytest (default: the whole suite), e.g. `tests/telemetry/test_export.py -k debug`.
[ $# -gt 0 ] || set -- tests/telemetry
# shellcheck disable=SC2016 # expanded by the inner sh, which gets the arguments after the script
exec unshare --net -- sh -c 'ip link set lo up && exec "$0" -m pytest -p no:cacheprovider -q "$@"' \
  "$VENV/bin/python" "$@"
