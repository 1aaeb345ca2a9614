{%- if port == "8090" -%}
{%- assign kvstore_port = "8092" -%}
{%- else -%}
{%- assign kvstore_port = "8090" -%}
{%- endif -%}
{%- if port == "8091" -%}
{%- assign issuer_port = "8092" -%}
{%- else -%}
{%- assign issuer_port = "8091" -%}
{%- endif -%}
#!/usr/bin/env bash
# Runs {{project-name}} on http://localhost:{{port}} (PORT) with human-readable logs
{%- if kvstore or auth %}, beside stand-ins of its peers{% endif %}.
{%- if kvstore %}
# The kit's stand-in for the key-value store listens on port {{kvstore_port}} (KVSTORE_STANDIN_PORT).
{%- endif %}
{%- if auth %}
# The kit's stand-in for the token issuer listens on port {{issuer_port}} (ISSUER_STANDIN_PORT).
{%- endif %}
# Ctrl-C, or a SIGTERM or SIGINT sent to this script's own PID, stops every process it started with the same
# graceful shutdown that the platform's SIGTERM triggers; when one of them ends, the others are stopped too.
{%- if auth %}
#
# A token of one of the issuer stand-in's test users (practitioner, patient, ssl, system), then a request with it:
#   token=$(curl -s -d grant_type=password -d username=practitioner \
#     localhost:{{issuer_port}}/auth/realms/ehealth/protocol/openid-connect/token | sed -E 's/.*"access_token":"([^"]+)".*/\1/')
#   curl -H "Authorization: Bearer $token" localhost:{{port}}/whoami
{%- endif %}
set -euo pipefail
cd "$(dirname "$0")/.."
port=${PORT:-{{port}}}
{%- if kvstore %}
kvstore_port=${KVSTORE_STANDIN_PORT:-{{kvstore_port}}}
{%- endif %}
{%- if auth %}
issuer_port=${ISSUER_STANDIN_PORT:-{{issuer_port}}}
{%- endif %}
export LOG_FORMAT=${LOG_FORMAT:-pretty}
cargo build --bins{% if kvstore %} --example kvstore-standin{% endif %}{% if auth %} --example issuer-standin{% endif %}
target=${CARGO_TARGET_DIR:-target}/debug

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
{%- if kvstore %}

PORT=$kvstore_port OTEL_SERVICE_NAME=kvstore-standin "$target/examples/kvstore-standin" &
children+=($!)
export KVSTORE_URL="${KVSTORE_URL:-http://127.0.0.1:$kvstore_port}"
{%- endif %}
{%- if auth %}

# Its tokens name http://localhost:<port>/auth/realms/<realm> as their issuer.
PORT=$issuer_port OTEL_SERVICE_NAME=issuer-standin "$target/examples/issuer-standin" &
children+=($!)
# The service fetches the issuer's keys as it starts (and else only 5 s later): it starts once the stand-in listens.
for _ in $(seq 100); do
  (: <"/dev/tcp/127.0.0.1/$issuer_port") 2>/dev/null && break
  sleep 0.1
done
export AUTH_ISSUER="${AUTH_ISSUER:-http://localhost:$issuer_port/auth/realms/ehealth}"
{%- endif %}

PORT=$port "$target/{{project-name}}" &
children+=($!)
# `wait -n` returns when a child ends or a trapped signal arrives (bash runs the trap at once, unlike for a
# foreground child, which is why no child runs in the foreground).
status=0
wait -n "${children[@]}" || status=$?
exit "$status"
