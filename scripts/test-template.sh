#!/usr/bin/env bash
# The cargo-generate template (template/), tested the way a team uses it: generate services non-interactively, then
# prove each passes its own checks on the first try (rustfmt, clippy -D warnings, its tests against the real binary,
# its scripts linted by shellcheck), that nothing shared with the kit's Dockerfile and chart has drifted, and that the
# generated chart renders and lints with the real Helm engine (tests/template), that each passes the
# telemed-conform run of its CI example, and that demo-svc's scripts/run-local.sh runs it beside its stand-ins.
#
# Variants: demo-svc (key-value store, token verification and chart, port 8080), lean-svc (none of them, port
# 9000) are built and tested; chart-svc (chart and token verification without the store, port 8081) is rendered;
# git-svc (kit from its git repository) is only generated, to check its dependency lines. All build against this
# checkout's kit (--define kit_path=...).
#
# Installs cargo-generate when missing (scripts/install-cargo-generate.sh) and the chart tools (.venv).
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"
cd "$ROOT"

step "tools"
bash scripts/install-cargo-generate.sh
ensure_apt shellcheck
ensure_venv scripts/requirements-chart.txt scripts/requirements-auth.txt
cargo generate --version

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The generated services share the workspace's target directory, so the dependencies the workspace has already
# compiled (same versions, same features) are reused instead of rebuilt for each service.
CARGO_TARGET_DIR=$(cargo_target_dir)
export CARGO_TARGET_DIR

generate() {
  local name=$1
  shift
  (cd "$work" && cargo generate --path "$ROOT/template" --name "$name" --silent --vcs none \
    --define vendor=CGI --define team=telemed-team --define "repository=https://git.example/telemed/$name" "$@")
}

step "generate"
local_kit=(--define "kit_path=$ROOT/crates/telemed-kit")
generate demo-svc "${local_kit[@]}"
generate lean-svc "${local_kit[@]}" --define kvstore=false --define chart=false --define auth=false --define port=9000
generate chart-svc "${local_kit[@]}" --define kvstore=false --define port=8081
generate git-svc
for name in demo-svc lean-svc; do
  # The workspace's lock file, trimmed by cargo to what the service uses: nothing is resolved anew, so the
  # service is built and tested against exactly the versions the kit is (tests/template checks).
  cp Cargo.lock "$work/$name/Cargo.lock"
  (cd "$work/$name" && cargo metadata --format-version 1 >/dev/null)
done

step "generated scripts, linted"
(cd "$work" && shellcheck ./*/scripts/*.sh)

step "drift from the kit, generated chart rendered"
GENERATED_DIR="$work" "$VENV/bin/python" -m pytest -p no:cacheprovider -q tests/template

for name in demo-svc lean-svc; do
  step "$name: its own checks (scripts/test.sh)"
  (cd "$work/$name" && bash scripts/test.sh)
done

step "demo-svc: scripts/run-local.sh (its README's token example; a SIGTERM to the script stops every process)"
ensure_apt curl procps
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
port=$(free_port) issuer_port=$(free_port)
(cd "$work/demo-svc" && PORT=$port KVSTORE_STANDIN_PORT=$(free_port) ISSUER_STANDIN_PORT=$issuer_port \
  SHUTDOWN_DELAY=0s exec bash scripts/run-local.sh >"$work/run-local.log" 2>&1) &
script=$!
deadline=$((SECONDS + 120))
until curl -sf "localhost:$port/healthz" >/dev/null; do
  if ((SECONDS > deadline)) || ! kill -0 "$script" 2>/dev/null; then
    kill -TERM "$script" 2>/dev/null || true
    cat "$work/run-local.log" >&2
    echo "demo-svc's run-local.sh did not come up" >&2
    exit 1
  fi
  sleep 0.2
done
mapfile -t children < <(pgrep -P "$script")
[ "${#children[@]}" -eq 3 ] || { echo "expected 3 children of run-local.sh, found ${children[*]}" >&2; exit 1; }
# The README's commands, on these ports.
token=$(curl -s -d grant_type=password -d username=practitioner \
  "localhost:$issuer_port/auth/realms/ehealth/protocol/openid-connect/token" \
  | sed -E 's/.*"access_token":"([^"]+)".*/\1/')
with_token=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $token" "localhost:$port/whoami")
without=$(curl -s -o /dev/null -w '%{http_code}' "localhost:$port/whoami")
kill -TERM "$script"
deadline=$((SECONDS + 30))
while kill -0 "$script" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
status=0
kill -0 "$script" 2>/dev/null && status=timeout || wait "$script" || status=$?
for pid in "${children[@]}"; do
  if kill -0 "$pid" 2>/dev/null; then
    kill -KILL "$script" "${children[@]}" 2>/dev/null || true
    echo "child $pid ($(ps -o comm= -p "$pid")) still runs after SIGTERM to run-local.sh" >&2
    exit 1
  fi
done
[ "$status" = 143 ] || { echo "run-local.sh: exit status $status after SIGTERM, expected 143" >&2; exit 1; }
if [ "$with_token" != 200 ] || [ "$without" != 401 ]; then
  echo "GET /whoami: $with_token with the stand-in's token (expected 200), $without without (expected 401)" >&2
  exit 1
fi
echo "run-local.sh: a token from the issuer stand-in was accepted; SIGTERM stopped its 3 processes, exit 143"

step "generated services: the CI example's conformance job (telemed-conform)"
cargo build --locked -p telemed-conform
for name in demo-svc lean-svc; do
  # The job's own step (demo-svc's starts the issuer stand-in beside the service), with the checker built here,
  # the binaries in the shared target directory and the stand-in on a free port.
  "$VENV/bin/python" - "$work/$name/.github/workflows/ci.yml" >"$work/$name.conformance" <<'PY'
import shlex, socket, sys, yaml
steps = yaml.safe_load(open(sys.argv[1]))["jobs"]["conformance"]["steps"]
step = next(step for step in steps if step.get("name") == "Platform rules (telemed-conform)")
env = step.get("env", {})
if "ISSUER_PORT" in env:
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        env["ISSUER_PORT"] = str(free.getsockname()[1])
for name, value in env.items():
    print(f"export {name}={shlex.quote(str(value))}")
print(step["run"])
PY
  sed -i "s|target/debug/|$CARGO_TARGET_DIR/debug/|g" "$work/$name.conformance"
  echo "$name:"
  cat "$work/$name.conformance"
  (cd "$work/$name" && export PATH="$CARGO_TARGET_DIR/debug:$PATH" && bash -e "$work/$name.conformance")
done

echo
echo "template: every variant generated, built, tested, rendered and checked by telemed-conform"
