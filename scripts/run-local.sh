#!/usr/bin/env bash
# Runs the reference service on http://localhost:8080 against the key-value store stand-in on port 8090, with
# human-readable logs. Ctrl-C stops both (the same graceful shutdown the platform's SIGTERM triggers).
#
#   curl -H 'Authorization: Bearer local' -X PUT -H 'Content-Type: text/plain' -d hej localhost:8080/settings/greeting
#   curl -H 'Authorization: Bearer local' localhost:8080/settings/greeting
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --locked -p reference-service -p kvstore-standin
PORT=8090 LOG_FORMAT=pretty target/debug/kvstore-standin &
standin=$!
trap 'kill -TERM "$standin" 2>/dev/null; wait "$standin" 2>/dev/null' EXIT
LOG_FORMAT="${LOG_FORMAT:-pretty}" PORT="${PORT:-8080}" KVSTORE_URL="${KVSTORE_URL:-http://127.0.0.1:8090}" \
  target/debug/reference-service
