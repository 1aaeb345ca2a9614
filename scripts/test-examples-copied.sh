#!/usr/bin/env bash
# Every example under examples/, tested the way someone onboarding uses it: the folder copied out of the
# repository, only its path dependencies (telemed-kit, the stand-in) changed, then its own tests run there. An
# example that inherits anything from the workspace (package fields, dependencies, lints) or reads a file outside
# its folder fails here (issue 17, point 4).
#
# Each copy gets the workspace's Cargo.lock, trimmed by cargo to what the example uses, so nothing is resolved
# anew: the example is tested against exactly the versions the workspace is. The copies share the workspace's
# target directory, so the dependencies already compiled there are reused.
#
# Usage: scripts/test-examples-copied.sh [EXAMPLE_DIR...]   (default: every examples/*/ with a Cargo.toml)
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"
cd "$ROOT"

command -v cargo >/dev/null || { echo "error: cargo not found" >&2; exit 1; }
command -v python3 >/dev/null || { echo "error: python3 not found" >&2; exit 1; }
[ -f Cargo.lock ] || { echo "error: $ROOT/Cargo.lock not found" >&2; exit 1; }

examples=("$@")
if [ ${#examples[@]} -eq 0 ]; then
  for manifest in examples/*/Cargo.toml; do
    [ -f "$manifest" ] && examples+=("$(basename "$(dirname "$manifest")")")
  done
fi
if [ ${#examples[@]} -eq 0 ]; then
  echo "error: no examples/*/Cargo.toml found under $ROOT" >&2
  exit 1
fi
for example in "${examples[@]}"; do
  [ -f "examples/$example/Cargo.toml" ] || { echo "error: examples/$example/Cargo.toml not found" >&2; exit 1; }
done

CARGO_TARGET_DIR=$(cargo_target_dir)
export CARGO_TARGET_DIR
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
case "$(cd "$work" && pwd -P)/" in
  "$(cd "$ROOT" && pwd -P)/"*)
    echo "error: the temporary directory $work is inside the repository (TMPDIR=${TMPDIR:-}); set TMPDIR elsewhere" >&2
    exit 1
    ;;
esac

# rewrite_paths ORIGINAL_DIR MANIFEST: fails on anything inherited from a workspace, then points every path
# dependency on a crate of this repository (crates/NAME) at this checkout, by absolute path. Any other path that
# leaves the example's folder fails: the script does not know what it should become.
rewrite_paths() {
  python3 - "$ROOT" "$1" "$2" <<'PY'
import os, re, sys

root, original, manifest = sys.argv[1], os.path.realpath(sys.argv[2]), sys.argv[3]
text = open(manifest, encoding="utf-8").read()
errors = []
for number, line in enumerate(text.splitlines(), 1):
    if line.lstrip().startswith("#"):
        continue
    if re.search(r"(\.|\b)workspace\s*=\s*true\b", line):
        errors.append(f"line {number} inherits from the workspace: {line.strip()}")

def rewrite(match):
    path = match.group(2)
    resolved = os.path.realpath(os.path.join(original, path))
    if resolved == original or resolved.startswith(original + os.sep):
        return match.group(0)  # inside the example's own folder: copied along
    crate = os.path.relpath(resolved, root).split(os.sep)
    if len(crate) == 2 and crate[0] == "crates" and os.path.isfile(os.path.join(resolved, "Cargo.toml")):
        return f'{match.group(1)}"{resolved}"'
    errors.append(f'path "{path}" leaves the example and is not a crate under {root}/crates: '
                  "this script does not know what it should become")
    return match.group(0)

text = re.sub(r'(\bpath\s*=\s*)"([^"]*)"', rewrite, text)
if errors:
    for error in errors:
        print(f"error: {sys.argv[2]}/Cargo.toml: {error}", file=sys.stderr)
    print("error: an example must build when its folder is copied out of the repository "
          "(see the comment at the top of its Cargo.toml)", file=sys.stderr)
    sys.exit(1)
open(manifest, "w", encoding="utf-8").write(text)
PY
}

# check_lock LOCK: fails when the trimmed lock holds a package (name, version, source) the workspace's lock lacks,
# that is when cargo resolved something anew for the copy.
check_lock() {
  python3 - "$ROOT/Cargo.lock" "$1" <<'PY'
import sys, tomllib

def packages(path):
    with open(path, "rb") as file:
        return {(p["name"], p["version"], p.get("source")) for p in tomllib.load(file).get("package", [])}

workspace, copy = packages(sys.argv[1]), packages(sys.argv[2])
if not copy:
    sys.exit(f"error: {sys.argv[2]} lists no packages")
new = sorted(copy - workspace, key=str)
if new:
    for name, version, source in new:
        print(f"error: {name} {version} ({source or 'path'}) is not in the workspace's Cargo.lock", file=sys.stderr)
    sys.exit("error: the copied example resolved versions of its own; its dependencies must match the workspace's")
PY
}

for example in "${examples[@]}"; do
  step "examples/$example, copied out of the workspace"
  copy="$work/$example"
  cp -R "examples/$example" "$copy"
  rm -rf "$copy/target" "$copy/Cargo.lock"
  rewrite_paths "examples/$example" "$copy/Cargo.toml"
  cp Cargo.lock "$copy/Cargo.lock"
  (cd "$copy" && cargo metadata --format-version 1 >/dev/null)
  check_lock "$copy/Cargo.lock"
  (cd "$copy" && cargo test --locked)
done

echo
echo "examples copied out of the workspace: ${#examples[@]} built and tested (${examples[*]})"
