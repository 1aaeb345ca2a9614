#!/usr/bin/env bash
# The project's shell scripts, linted: shellcheck (Debian) on every tracked script, plus one rule of our own that
# the linter lacks. No pipe may end in `head`: head exits after the lines it wants, the writer then dies of
# SIGPIPE, and under `set -o pipefail` (every script here, and GitHub Actions' bash) that exit status 141 fails the
# run at random, depending on which process the scheduler runs first. A `git log` piped into head did exactly that
# in CI. Use `first_line` (scripts/lib/common.sh), `find -print -quit` or `awk '...; exit'` on a file instead.
# The template's scripts are linted after generation (scripts/test-template.sh); the rule covers them here too.
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"
cd "$ROOT"
ensure_apt shellcheck

mapfile -t scripts < <(git ls-files '*.sh' .ci/run | grep -v '^template/')
shellcheck --version | sed -n 2p
shellcheck -x "${scripts[@]}"

# Comment lines are skipped: they may name the pattern.
if git grep -nE '^[^#]*\|[[:space:]]*head([[:space:]]|$)' -- '*.sh' .ci/run '*.yml' '*.yaml'; then
  echo "error: the lines above pipe into head; under pipefail its SIGPIPE fails the script at random (see $0)" >&2
  exit 1
fi
echo "shell scripts: shellcheck clean, no pipe into head (${#scripts[@]} scripts)"
