#!/usr/bin/env bash
# build-previous.sh [REV] [PROFILE]: builds the reference service of an earlier release and prints the path of
# its binary on the last line of stdout.
#
# REV defaults to the commit of the latest release in CHANGELOG.md (scripts/release/latest.py); a changelog
# without a release, or naming a commit this clone lacks, fails. PROFILE is `debug` (default) or `release`.
# `build-previous.sh --default-rev` prints that default and builds nothing.
#
# The source comes from `git archive`, not `git worktree add`: the extracted tree is plain files, so a run that
# is killed half-way leaves no worktree registered in the shared repository. Source and target live under
# `<cargo target dir>/rolling/` at paths fixed per revision, so a second run finds the binary (or at least the compiled
# dependencies) and takes seconds; the current tree's own `target/debug/reference-service` is never overwritten.
set -euo pipefail
. "$(dirname "$0")/../lib/common.sh"
cd "$ROOT"

default_previous_rev() {
  local release
  release=$(python3 scripts/release/latest.py --check) || return 1
  echo "${release#* }"
}

if [ "${1:-}" = --default-rev ]; then
  default_previous_rev
  exit 0
fi

rev=${1:-$(default_previous_rev)}
profile=${2:-debug}
sha=$(git rev-parse --verify "$rev^{commit}")
short=${sha:0:12}
target_dir=$(cargo_target_dir)
base="$target_dir/rolling/previous-$short"
binary="$base/reference-service-$profile"

if [ ! -x "$binary" ]; then
  echo "building the reference service of $rev ($short, $profile) in $base" >&2
  rm -rf "$base/src"
  mkdir -p "$base/src"
  git archive "$sha" | tar -x -C "$base/src"
  flags=(--locked -p reference-service --bin reference-service)
  [ "$profile" = release ] && flags+=(--release)
  # GIT_REVISION is what the kit's build_info reports; without .git in the extracted tree, pass it explicitly.
  (cd "$base/src" && GIT_REVISION="$sha" CARGO_TARGET_DIR="$base/target" cargo build "${flags[@]}" >&2)
  cp "$base/target/$profile/reference-service" "$binary"
fi
echo "$binary"
