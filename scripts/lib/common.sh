# shellcheck shell=bash
# Shared helpers for the test scripts. Source it: `. "$(dirname "$0")/lib/common.sh"`.
# Every install is idempotent and skipped when already done, so a warm machine pays nothing.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export ROOT
VENV="$ROOT/.venv"

# ensure_apt PACKAGE...: installs the Debian packages that are not installed yet.
ensure_apt() {
  local missing=()
  for pkg in "$@"; do
    [ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null)" = "install ok installed" ] || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "installing Debian packages: ${missing[*]}"
  if [ ! -f /tmp/.telemed-apt-updated ]; then
    apt-get update -qq && touch /tmp/.telemed-apt-updated
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# ensure_venv REQUIREMENTS_FILE...: creates the project's venv and installs the pinned requirements.
ensure_venv() {
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  local req
  for req in "$@"; do
    local stamp
    stamp="$VENV/.installed-$(basename "$req")-$(sha256sum "$req" | cut -c1-16)"
    if [ ! -f "$stamp" ]; then
      "$VENV/bin/pip" install -q --disable-pip-version-check -r "$req"
      touch "$stamp"
    fi
  done
}

# cargo_target_dir: prints the workspace's target directory (CARGO_TARGET_DIR and config included).
cargo_target_dir() {
  cargo metadata --format-version 1 --no-deps --locked \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])'
}

# first_line: prints the first line of its input and reads the rest, so that the writer never gets SIGPIPE; use it
# where `head -1` would go (scripts/check-scripts.sh says why, and fails on a pipe into head).
first_line() {
  sed -n 1p
}

# step NAME: prints a visible header for a test step.
step() {
  printf '\n==> %s\n' "$*"
}
