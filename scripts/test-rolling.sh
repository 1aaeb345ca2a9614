#!/usr/bin/env bash
# CI: rolling restarts behind HAProxy under load, short. Debug builds; about 90 s once built.
#
#   bash scripts/test-rolling.sh [extra arguments of tests/reliability/rolling.py]
#
# Runs a rolling restart of two instances in each load mode (keep-alive and a new connection per request), one
# coexistence round (the previous release replaced by this one while both serve the load) and the
# SHUTDOWN_DELAY=0s negative control, which must produce failed requests. Every request is counted; the run
# passes only with zero failures. Ends with `N passed, N failed`; exits 1 when any scenario failed.
# PREVIOUS_REV picks the previous release (default: see scripts/rolling/build-previous.sh). The full run with
# release builds is scripts/rolling-restart.sh.
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"
cd "$ROOT"
ensure_apt haproxy
cargo build --locked -q -p reference-service -p kvstore-standin -p issuer-standin
TARGET_DIR=$(cargo_target_dir)
previous_rev=${PREVIOUS_REV:-$(bash scripts/rolling/build-previous.sh --default-rev)}
previous=$(bash scripts/rolling/build-previous.sh "$previous_rev" debug | tail -1)
run_dir=$(mktemp -d "${TMPDIR:-/tmp}/test-rolling.XXXXXX")
python3 tests/reliability/rolling.py --profile ci \
  --service "$TARGET_DIR/debug/reference-service" --standin "$TARGET_DIR/debug/kvstore-standin" \
  --previous "$previous" --previous-label "$(git rev-parse --short=7 "$previous_rev")" \
  --run-dir "$run_dir" "$@"
