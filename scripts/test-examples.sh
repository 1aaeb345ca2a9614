#!/usr/bin/env bash
# Builds and runs every focused example under examples/ (all but the reference service, which has its own
# tests): each example crate's integration tests start the real binary, call its routes, send SIGTERM and expect
# exit code 0. Also lints them, since examples are code people copy.
#
# Usage: scripts/test-examples.sh [EXAMPLE_PACKAGE...]   (default: every example-* package of the workspace)
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"
cd "$ROOT"

packages=("$@")
if [ ${#packages[@]} -eq 0 ]; then
  mapfile -t packages < <(cargo metadata --format-version 1 --no-deps --locked | python3 -c '
import json, sys
for package in json.load(sys.stdin)["packages"]:
    if package["name"].startswith("example-"):
        print(package["name"])')
fi
if [ ${#packages[@]} -eq 0 ]; then
  echo "no example-* packages found under examples/" >&2
  exit 1
fi
args=()
for package in "${packages[@]}"; do args+=(-p "$package"); done

step "clippy: ${packages[*]}"
cargo clippy --locked "${args[@]}" --all-targets -- -D warnings

step "run: ${packages[*]}"
cargo test --locked "${args[@]}"
