#!/usr/bin/env bash
# Soak (not in CI): 5 minutes of mixed load against one reference-service instance (release build) and the
# key-value store stand-in, sampling RSS, open file descriptors, threads and requests in flight every second, and
# checking they stay flat (mean of the first minute after a 30 s warm-up against the mean of the last minute).
# Prints the machine, the date and a Markdown table for docs/performance.md, section "Soak".
#
#   bash scripts/soak.sh                      # 300 s at 200 requests/s
#   bash scripts/soak.sh --duration 3600 --rate 400
#
# Arguments go to tests/reliability/soak.py (see its --help). Exits 1 when a figure grew or a request failed.
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"
cd "$ROOT"
cargo build --release --locked -q -p reference-service -p kvstore-standin -p issuer-standin
TARGET_DIR=$(cargo_target_dir)
run_dir=${RUN_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/soak.XXXXXX")}
step "soak: $(git rev-parse --short HEAD), release build"
echo "machine: $(lscpu | sed -n 's/^Model name: *//p' | first_line), $(nproc) cores, $(free -g | awk '/^Mem:/ {print $2}') GiB RAM, $(uname -sr)"
echo "date: $(date -u +%Y-%m-%dT%H:%MZ)"
python3 tests/reliability/soak.py \
  --service "$TARGET_DIR/release/reference-service" --standin "$TARGET_DIR/release/kvstore-standin" \
  --run-dir "$run_dir" "$@"
