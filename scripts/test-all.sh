#!/usr/bin/env bash
# Runs every test of the project: formatting, lints (Rust and shell), unit and integration tests (real processes,
# real signals), API docs, the examples (also copied out of the workspace), telemetry end to end, rolling restarts,
# the template, the chart and image checks, telemed-conform against real services, supply-chain checks, negative
# controls, mutation testing of the B3 parser and bounded fuzzing. docs/testing.md says what each step proves and
# what it cannot. Installs what it needs (idempotent, cached).
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"
cd "$ROOT"

step "toolchain"
rustc --version
cargo --version

step "format"
cargo fmt --all -- --check

step "shell scripts"
bash scripts/check-scripts.sh

step "clippy"
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings

step "supply chain: cargo deny, offline (licences, duplicate crates, sources)"
bash scripts/test-deny.sh

step "tests (the examples under examples/ run as real processes here too)"
cargo test --workspace --all-features --locked

step "examples, copied out of the workspace (each builds and passes its tests on its own)"
bash scripts/test-examples-copied.sh

step "the kit without its default features (no Zipkin export)"
cargo clippy -p telemed-kit --no-default-features --all-targets --locked -- -D warnings
cargo test -p telemed-kit --no-default-features --lib --locked

step "reference service again, with every cache disabled"
CACHE_DISABLED=true cargo test -p reference-service --all-features --locked

step "API docs"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --all-features --no-deps --locked -q

step "access tokens signed by an independent implementation (PyJWT)"
bash scripts/test-auth-peers.sh

step "scripts/run-local.sh: the README's token and settings examples, SIGTERM and SIGINT reach every process"
bash scripts/test-run-local.sh

step "telemetry end to end"
bash scripts/test-telemetry.sh

step "negative controls: the log-model and B3 interop suites fail a planted fault"
bash scripts/negative-controls.sh

step "rolling restarts behind HAProxy"
bash scripts/test-rolling.sh

step "template"
bash scripts/test-template.sh

step "chart"
bash scripts/test-chart.sh

step "metrics"
bash scripts/test-metrics.sh

step "container image"
bash scripts/test-image.sh

step "conformance"
bash scripts/test-conform.sh

step "mutation testing: the B3 parser (cargo-mutants, bounded to 10 minutes)"
MUTANTS_BUDGET=600 bash scripts/mutants.sh b3

step "fuzzing"
bash scripts/fuzz.sh "${FUZZ_SECONDS:-20}"

echo
echo "all test steps passed"
