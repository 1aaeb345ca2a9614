#!/usr/bin/env bash
# Runs every test of the project: formatting, lints, unit and integration tests (real processes, real signals),
# API docs, and the checks each later part adds. Installs what it needs (idempotent, cached).
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"
cd "$ROOT"

step "toolchain"
rustc --version
cargo --version

step "format"
cargo fmt --all -- --check

step "clippy"
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings

step "tests"
cargo test --workspace --all-features --locked

step "API docs"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --all-features --no-deps --locked -q

echo
echo "all test steps passed"
