#!/usr/bin/env bash
# scripts/run-local.sh as a developer uses it: the README's curl examples work (a token from the issuer
# stand-in, a setting written and read back through the reference service), and a SIGTERM or a SIGINT sent to
# the script's own PID stops every process it started, with the script's exit status 143 or 130.
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"
cd "$ROOT"
ensure_apt curl procps
# Job control: without it bash starts background jobs with SIGINT ignored, and the SIGINT case would test nothing.
set -m

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

run_once() {
  local signal=$1 expected=$2
  local port kvstore_port issuer_port log
  port=$(free_port) kvstore_port=$(free_port) issuer_port=$(free_port)
  log=$(mktemp)
  # With SIGINT and SIGTERM at their defaults, as in a developer's terminal: a signal ignored by whoever started
  # this test (CI run as a background job of a non-interactive shell ignores SIGINT) would be inherited, and bash
  # cannot trap a signal that was ignored when it started.
  PORT=$port KVSTORE_STANDIN_PORT=$kvstore_port ISSUER_STANDIN_PORT=$issuer_port SHUTDOWN_DELAY=0s \
    env --default-signal=INT,TERM bash scripts/run-local.sh >"$log" 2>&1 &
  local script=$!
  local deadline=$((SECONDS + 300))
  until curl -sf "localhost:$port/readyz" >/dev/null && curl -sf "localhost:$issuer_port/readyz" >/dev/null; do
    if ((SECONDS > deadline)) || ! kill -0 "$script" 2>/dev/null; then
      cat "$log" >&2
      echo "run-local.sh did not come up" >&2
      exit 1
    fi
    sleep 0.2
  done
  local children
  mapfile -t children < <(pgrep -P "$script")
  [ "${#children[@]}" -eq 3 ] || { echo "expected 3 children, found ${children[*]}" >&2; exit 1; }

  # The README's example.
  local token
  token=$(curl -s -d grant_type=password -d username=practitioner \
    "localhost:$issuer_port/auth/realms/ehealth/protocol/openid-connect/token" \
    | sed -E 's/.*"access_token":"([^"]+)".*/\1/')
  [ -n "$token" ] || { echo "no token from the issuer stand-in" >&2; exit 1; }
  # Ready is not yet able to check tokens: the issuer's keys load in the background (503 until then).
  until [ "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $token" "localhost:$port/settings/greeting")" = 404 ]; do
    ((SECONDS < deadline)) || { cat "$log" >&2; echo "the settings API never answered 404 for an absent key" >&2; exit 1; }
    sleep 0.2
  done
  curl -sf -H "Authorization: Bearer $token" -X PUT -H 'Content-Type: text/plain' -d hej \
    "localhost:$port/settings/greeting" >/dev/null
  [ "$(curl -sf -H "Authorization: Bearer $token" "localhost:$port/settings/greeting")" = hej ]

  kill "-$signal" "$script"
  # Bounded: a script that ignores the signal (a foreground child holds it until that child ends) must fail
  # the test, not hang it. The children's own shutdown takes well under a second with SHUTDOWN_DELAY=0s.
  deadline=$((SECONDS + 30))
  while kill -0 "$script" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
  if kill -0 "$script" 2>/dev/null; then
    echo "SIG$signal: run-local.sh still runs 30 s after the signal; its processes and its output:" >&2
    # What the script and each child were doing (state, wait channel) and what they wrote.
    ps -o pid,ppid,stat,wchan:20,etime,args -p "$script" "${children[@]}" >&2 || true
    tail -n 30 "$log" >&2
    kill -KILL "$script" "${children[@]}" 2>/dev/null || true
    exit 1
  fi
  local status=0
  wait "$script" || status=$?
  rm -f "$log"
  [ "$status" -eq "$expected" ] || { echo "SIG$signal: run-local.sh exited $status, expected $expected" >&2; exit 1; }
  for pid in "${children[@]}"; do
    if kill -0 "$pid" 2>/dev/null; then
      echo "SIG$signal: child $pid ($(ps -o comm= -p "$pid")) still runs after run-local.sh ended" >&2
      exit 1
    fi
  done
  echo "SIG$signal to run-local.sh stopped its 3 processes; it exited $status"
}

run_once TERM 143
run_once INT 130
