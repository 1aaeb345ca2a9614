#!/usr/bin/env bash
# Installs cargo-generate when it is missing.
#
# `cargo install cargo-generate --locked` fails on rustc 1.95: its lock file holds cargo-util-schemas and kstring
# releases that need a newer rustc. So fetch the crate source through cargo itself, pin those two back, and build
# it without the crate's fat-LTO release profile (LTO alone takes most of the build time on two cores).
set -euo pipefail
version=0.26.0
if command -v cargo-generate >/dev/null 2>&1; then
  exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/fetch/src"
cat >"$work/fetch/Cargo.toml" <<TOML
[package]
name = "fetch-cargo-generate"
version = "0.0.0"
edition = "2021"
[dependencies]
cargo-generate = "=$version"
TOML
: >"$work/fetch/src/lib.rs"
(cd "$work/fetch" && cargo fetch -q)
src=$(find "${CARGO_HOME:-$HOME/.cargo}/registry/src" -maxdepth 2 -type d -name "cargo-generate-$version" -print -quit)
cp -r "$src" "$work/cargo-generate"
cd "$work/cargo-generate"
cargo update -q -p cargo-util-schemas --precise 0.14.1
cargo update -q -p kstring --precise 2.0.2
CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
  cargo install --locked --path . --root "${CARGO_HOME:-$HOME/.cargo}"
