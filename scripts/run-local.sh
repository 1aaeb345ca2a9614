#!/usr/bin/env bash
# Runs the reference service on http://localhost:8080 with its peers: the key-value store stand-in on port 8090
# and the token issuer stand-in on port 8091, with human-readable logs. Ctrl-C, or a SIGTERM or SIGINT sent to
# this script's own PID, stops all three (the same graceful shutdown the platform's SIGTERM triggers); when one
# of them ends, the others are stopped too. Ports: PORT, KVSTORE_STANDIN_PORT, ISSUER_STANDIN_PORT.
#
#   token=$(curl -s -d grant_type=password -d username=practitioner \
#     localhost:8091/auth/realms/ehealth/protocol/openid-connect/token | sed -E 's/.*"access_token":"([^"]+)".*/\1/')
#   curl -H "Authorization: Bearer $token" -X PUT -H 'Content-Type: text/plain' -d hej localhost:8080/settings/greeting
#   curl -H "Authorization: Bearer $token" localhost:8080/settings/greeting
set -euo pipefail
cd "$(dirname "$0")/.."
port=${PORT:-8080}
kvstore_port=${KVSTORE_STANDIN_PORT:-8090}
issuer_port=${ISSUER_STANDIN_PORT:-8091}
export LOG_FORMAT=${LOG_FORMAT:-pretty}
cargo build --locked -p reference-service -p kvstore-standin -p issuer-standin

children=()
# shellcheck disable=SC2317 # called by the traps below
stop() {
  trap - TERM INT EXIT
  # Every child gets the signal, then the script waits for each: their own graceful shutdowns run in parallel.
  for pid in "${children[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${children[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap 'stop; exit 143' TERM
trap 'stop; exit 130' INT
trap stop EXIT

PORT=$kvstore_port target/debug/kvstore-standin &
children+=($!)
PORT=$issuer_port ISSUER_BASE_URL="http://localhost:$issuer_port" target/debug/issuer-standin &
children+=($!)
PORT=$port KVSTORE_URL="${KVSTORE_URL:-http://127.0.0.1:$kvstore_port}" \
  AUTH_ISSUER="${AUTH_ISSUER:-http://localhost:$issuer_port/auth/realms/ehealth}" target/debug/reference-service &
children+=($!)
# `wait -n` returns when a child ends or a trapped signal arrives (bash runs the trap at once, unlike for a
# foreground child, which is why no child runs in the foreground).
status=0
wait -n "${children[@]}" || status=$?
exit "$status"
