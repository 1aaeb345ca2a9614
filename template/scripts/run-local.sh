#!/usr/bin/env bash
# Runs {{project-name}} on http://localhost:{{port}} with human-readable logs; Ctrl-C stops it with the same
# graceful shutdown that the platform's SIGTERM triggers.
{%- if kvstore %}
# The kit's key-value store stand-in runs beside it, on port {% if port == "8090" %}8091{% else %}8090{% endif %}.
{%- endif %}
set -euo pipefail
cd "$(dirname "$0")/.."
{%- if kvstore %}
{%- if port == "8090" %}
standin_port=8091
{%- else %}
standin_port=8090
{%- endif %}
cargo build --example kvstore-standin
PORT=$standin_port OTEL_SERVICE_NAME=kvstore-standin LOG_FORMAT=pretty target/debug/examples/kvstore-standin &
standin=$!
trap 'kill -TERM "$standin" 2>/dev/null; wait "$standin" 2>/dev/null' EXIT
export KVSTORE_URL="${KVSTORE_URL:-http://127.0.0.1:$standin_port}"
{%- endif %}
LOG_FORMAT="${LOG_FORMAT:-pretty}" PORT="${PORT:-{{port}}}" cargo run
