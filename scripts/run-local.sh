#!/usr/bin/env bash
# Runs the reference service locally on http://localhost:8080 with human-readable logs.
# Stop it with Ctrl-C (the same graceful shutdown the platform's SIGTERM triggers).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --locked -p reference-service
exec env LOG_FORMAT="${LOG_FORMAT:-pretty}" PORT="${PORT:-8080}" target/debug/reference-service
