#!/usr/bin/env bash
# Rolling restarts behind HAProxy under constant load, the full run: release builds, 120 s per load mode,
# coexistence with the previous release in both directions (upgrade, then rollback), the negative controls, and
# two informational runs where HAProxy's health check alone takes a stopping instance out. See
# docs/operations.md, "Rolling restarts".
#
#   bash scripts/rolling-restart.sh [extra arguments of tests/reliability/rolling.py]
#   bash scripts/rolling-restart.sh --duration 300 --rate 400
#
# PREVIOUS_REV picks the previous release (default: the newest v* tag, else the first commit of the reference
# service). Writes the results as JSON to $RUN_DIR/results.json as well; logs stay in $RUN_DIR.
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"
cd "$ROOT"
ensure_apt haproxy
cargo build --release --locked -q -p reference-service -p kvstore-standin
TARGET_DIR=$(cargo_target_dir)
previous_rev=${PREVIOUS_REV:-$(bash scripts/rolling/build-previous.sh --default-rev)}
previous=$(bash scripts/rolling/build-previous.sh "$previous_rev" release | tail -1)
RUN_DIR=${RUN_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/rolling-restart.XXXXXX")}
mkdir -p "$RUN_DIR"
step "rolling restarts: $(git rev-parse --short HEAD) next to $(git rev-parse --short=7 "$previous_rev") on $(nproc) cores, $(haproxy -v | first_line | cut -d' ' -f1-3)"
python3 tests/reliability/rolling.py --profile full \
  --service "$TARGET_DIR/release/reference-service" --standin "$TARGET_DIR/release/kvstore-standin" \
  --previous "$previous" --previous-label "$(git rev-parse --short=7 "$previous_rev")" \
  --run-dir "$RUN_DIR" --json "$RUN_DIR/results.json" "$@"
