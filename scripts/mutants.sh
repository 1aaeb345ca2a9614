#!/usr/bin/env bash
# Mutation testing with cargo-mutants: each mutant (a changed operator, a function body replaced by a default
# value, a deleted match arm...) is built and the kit's unit tests run against it; a mutant that no test fails on
# ("missed") is a behaviour nothing checks. Mutants judged equivalent (no test can tell them apart from the real
# code) are excluded by name in .cargo/mutants.toml, each with its reason, and listed in docs/testing.md.
#
# Usage: scripts/mutants.sh [SCOPE]
#   SCOPE  all (default): the B3 parser and propagator, redaction, the configuration parser and the shutdown
#          timeline. b3: the B3 parser alone (CI's run, bounded by MUTANTS_BUDGET seconds, 600 by default).
#          One file of `all` with the tests named for it, to finish or repeat a file in minutes rather than hours:
#          propagator (the B3 propagator), redact, config, shutdown (the shutdown timeline).
#
# Fails when a mutant is missed, or the run does not end inside the budget: a mutation run that could not finish
# has proved nothing. A mutant whose tests time out (a loop that no longer advances: `at += 1` made `at -= 1`) is
# caught, as a hang is a test failure; such mutants are listed, and counted as timeouts in the figures. The report lands in target/mutants-SCOPE/mutants.out/ (outcomes.json, missed.txt).
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"
cd "$ROOT"

MUTANTS_VERSION=27.1.0
scope=${1:-all}
kit=crates/telemed-kit/src
case $scope in
  b3)
    files=("$kit/telemetry/trace/b3/parse.rs")
    budget=${MUTANTS_BUDGET:-600}
    # The tests named for B3: the parser's unit tests and tests/b3_parser.rs; the rest of the kit's only add time.
    tests=(--lib --test b3_parser b3)
    ;;
  propagator)
    files=("$kit/telemetry/trace/b3/propagator.rs")
    budget=${MUTANTS_BUDGET:-3600}
    tests=(--lib --test b3_parser b3)
    ;;
  redact | config | shutdown)
    files=("$kit/$scope.rs")
    [ "$scope" = shutdown ] && files=("$kit/shutdown/settings.rs")
    budget=${MUTANTS_BUDGET:-7200}
    # The unit tests whose path names the module (redact::tests::..., config::tests::..., shutdown::...): a mutant
    # only another module's tests notice is a behaviour the module's own tests leave unchecked.
    tests=(--lib "$scope")
    ;;
  all)
    files=("$kit/telemetry/trace/b3/parse.rs" "$kit/telemetry/trace/b3/propagator.rs" "$kit/redact.rs"
      "$kit/config.rs" "$kit/shutdown/settings.rs")
    budget=${MUTANTS_BUDGET:-14400}
    # The kit's unit tests, and tests/b3_parser.rs, which checks the B3 parser's errors from outside its module.
    tests=(--lib --test b3_parser)
    ;;
  *)
    echo "usage: $0 [all|b3|propagator|redact|config|shutdown]: unknown scope '$scope'" >&2
    exit 2
    ;;
esac

if ! cargo mutants --version 2>/dev/null | grep -qx "cargo-mutants $MUTANTS_VERSION"; then
  step "installing cargo-mutants $MUTANTS_VERSION"
  # A lean release profile: the tool's speed hardly matters next to the builds it drives, its compile time does.
  CARGO_PROFILE_RELEASE_OPT_LEVEL=1 CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 CARGO_PROFILE_RELEASE_LTO=false \
    CARGO_PROFILE_RELEASE_DEBUG=false cargo install cargo-mutants --locked --version "$MUTANTS_VERSION"
fi

out="$(cargo_target_dir)/mutants-$scope"
rm -rf "$out"
mkdir -p "$out"
file_args=()
for file in "${files[@]}"; do
  [ -f "$file" ] || { echo "mutation scope '$scope': $file does not exist (moved? update $0)" >&2; exit 1; }
  file_args+=(--file "$file")
done

step "cargo-mutants on ${files[*]} (budget ${budget}s)"
# cargo-mutants copies the tracked sources (not target/ or .venv/: --gitignore) to a scratch directory and builds
# there into the workspace's own target directory: the compiled crates.io dependencies are reused, and only the
# kit (and the stand-in, a dev-dependency built on it) compiles per mutant, as a package at another path, so the
# workspace's own artifacts are left alone. The kit's unit tests (--lib) are where these modules are tested.
# Cargo's artifact names do not depend on where a workspace lies, so a mutated kit built from the scratch copy has
# the name of the workspace's own kit, and a later build here could take it as fresh. However the run ends, the
# kit's and the stand-in's artifacts go, and the next build compiles them from this tree again.
trap 'cargo clean --quiet --package telemed-kit --package kvstore-standin' EXIT
status=0
CARGO_TARGET_DIR="$(cargo_target_dir)" timeout --signal=INT --kill-after=30 "$budget" \
  cargo mutants --package telemed-kit "${file_args[@]}" --gitignore=true --no-shuffle --colors=never \
  --output "$out" -- "${tests[@]}" || status=$?

report="$out/mutants.out"
case $status in
  # 2: mutants missed; 3: tests timed out, which cargo-mutants reports before missed ones, so missed.txt decides.
  0 | 2 | 3)
    if [ -s "$report/missed.txt" ]; then
      echo "cargo-mutants: missed mutants (in $report/missed.txt); kill each with a test or, if equivalent," \
        "exclude it in .cargo/mutants.toml and list it in docs/testing.md:" >&2
      cat "$report/missed.txt" >&2
      exit 1
    fi
    if [ -s "$report/timeout.txt" ]; then
      echo "mutants whose tests hung (caught: a hang fails the tests):"
      cat "$report/timeout.txt"
    fi
    ;;
  124 | 137)
    echo "cargo-mutants did not finish inside ${budget}s: the run proves nothing (see $report)" >&2
    exit 1
    ;;
  *)
    echo "cargo-mutants failed (exit $status, see $report/debug.log): no verdict on the mutants" >&2
    exit 1
    ;;
esac
python3 - "$report/outcomes.json" <<'EOF'
import json, sys
outcomes = json.load(open(sys.argv[1]))
print(f"mutants: {outcomes['total_mutants']}, caught: {outcomes['caught']}, missed: {outcomes['missed']}, "
      f"timeouts: {outcomes['timeout']}, unviable: {outcomes['unviable']}")
if outcomes["total_mutants"] == 0:
    sys.exit("cargo-mutants generated no mutant: the scope names no code")
EOF
