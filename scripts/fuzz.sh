#!/usr/bin/env bash
# Runs the cargo-fuzz targets in fuzz/ for a bounded time each; fails if any target finds a crash.
#
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]
#   SECONDS  fuzzing time per target. Defaults to 20.
#   TARGET   targets to run. Defaults to every target in fuzz/Cargo.toml (`cargo fuzz list`).
#   FUZZ_SANITIZER=none|address|...  Defaults to address (cargo-fuzz's default).
#
# A new target needs only fuzz_targets/NAME.rs and a [[bin]] entry in fuzz/Cargo.toml; it may add a committed
# seed corpus fuzz/corpus/NAME/ and a libFuzzer dictionary fuzz/NAME.dict, both picked up here. Inputs libFuzzer
# discovers go to fuzz/target/corpus/NAME/ (ignored by git) so a run never dirties the committed seeds; crash
# inputs go to fuzz/artifacts/NAME/, and `cargo +nightly fuzz run NAME fuzz/artifacts/NAME/<file>` replays one.
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"

seconds=${1:-20}
if ! [[ $seconds =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: $0 [SECONDS] [TARGET...]: SECONDS must be a positive whole number, got '$seconds'" >&2
  exit 2
fi
shift $(($# > 0 ? 1 : 0))
sanitizer=${FUZZ_SANITIZER:-address}

if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "the nightly toolchain is missing; cargo-fuzz needs it (rustup toolchain install nightly)" >&2
  exit 2
fi
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  step "installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

cd "$ROOT"
# cargo-fuzz has no --locked: without this check a stale fuzz/Cargo.lock is rewritten silently on every run.
if ! cargo metadata --locked --format-version 1 --manifest-path fuzz/Cargo.toml >/dev/null; then
  echo "fuzz/Cargo.lock is out of date with the kit's dependencies: run" \
    "'cargo metadata --format-version 1 --manifest-path fuzz/Cargo.toml >/dev/null' and commit the lock" >&2
  exit 1
fi
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  # A failing `fuzz list` inside a process substitution would go unseen and leave zero targets to "pass".
  listed=$(cargo +nightly fuzz list) || { echo "cargo fuzz list failed: no fuzz target could be found" >&2; exit 1; }
  mapfile -t targets <<<"$listed"
fi
# An empty list would run no target at all and still end in the line below.
if [ ${#targets[@]} -eq 0 ] || [ -z "${targets[0]}" ]; then
  echo "no fuzz target to run (fuzz/Cargo.toml lists none?)" >&2
  exit 1
fi

failed=()
for target in "${targets[@]}"; do
  step "fuzz $target for ${seconds}s (sanitizer: $sanitizer)"
  work="fuzz/target/corpus/$target"
  mkdir -p "$work"
  corpora=("$work")
  [ -d "fuzz/corpus/$target" ] && corpora+=("fuzz/corpus/$target")
  args=(-max_total_time="$seconds" -timeout=10 -max_len=1024 -print_final_stats=1)
  [ -f "fuzz/$target.dict" ] && args+=(-dict="fuzz/$target.dict")
  if ! cargo +nightly fuzz run --sanitizer "$sanitizer" "$target" "${corpora[@]}" -- "${args[@]}"; then
    failed+=("$target")
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz targets that failed: ${failed[*]} (inputs under fuzz/artifacts/)" >&2
  exit 1
fi
echo "all fuzz targets ran ${seconds}s without a failure: ${targets[*]}"
