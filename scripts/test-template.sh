#!/usr/bin/env bash
# The cargo-generate template (template/), tested the way a team uses it: generate services non-interactively, then
# prove each passes its own checks on the first try (rustfmt, clippy -D warnings, its tests against the real binary,
# its scripts linted by shellcheck), that nothing shared with the kit's Dockerfile and chart has drifted, and that the
# generated chart renders and lints with the real Helm engine (tests/template), and that each passes the
# telemed-conform run of its CI example.
#
# Variants: demo-svc (key-value store and chart, port 8080), lean-svc (neither, port 9000) are built and tested;
# chart-svc (chart without the store, port 8081) is rendered; git-svc (kit from its git repository) is only
# generated, to check its dependency line. All build against this checkout's kit (--define kit_path=...).
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
generate lean-svc "${local_kit[@]}" --define kvstore=false --define chart=false --define port=9000
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

step "generated services: the CI example's conformance job (telemed-conform)"
cargo build --locked -p telemed-conform
for name in demo-svc lean-svc; do
  # The job's own command line, with the checker built here and the binary in the shared target directory.
  command=$("$VENV/bin/python" -c '
import sys, yaml
steps = yaml.safe_load(open(sys.argv[1]))["jobs"]["conformance"]["steps"]
print(next(step["run"] for step in steps if step.get("run", "").startswith("telemed-conform ")))
' "$work/$name/.github/workflows/ci.yml")
  command=${command//target\/debug\//$CARGO_TARGET_DIR/debug/}
  echo "$name: $command"
  (cd "$work/$name" && export PATH="$CARGO_TARGET_DIR/debug:$PATH" && eval "$command")
done

echo
echo "template: every variant generated, built, tested, rendered and checked by telemed-conform"
