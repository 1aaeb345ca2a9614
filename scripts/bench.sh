#!/usr/bin/env bash
# Cost of the kit: the reference service's full stack (JSON logs on, every request sampled and exported to a
# local Zipkin sink) against bare axum serving the same `GET /`, with wrk; plus startup time and idle RSS. The
# same parts composed by hand in a service's own main (examples/existing-service) run in the same rounds.
# Not part of CI (noisy, minutes long). Installs what it needs, builds both binaries (release), runs
# scripts/bench/run.py and, with --write-doc, puts the report into docs/performance.md between its markers.
#
#   scripts/bench.sh [--write-doc] [run.py options: --rounds 5 --duration 10 --connections 64 ...]
#   scripts/bench.sh --smoke          # seconds: checks the machinery only, figures meaningless
#   scripts/bench.sh --instructions   # instructions per request under callgrind instead (deterministic)
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"
cd "$ROOT"

write_doc=false
instructions=false
args=()
for arg in "$@"; do
  case "$arg" in
    --write-doc) write_doc=true ;;
    --instructions) instructions=true ;;
    --smoke) args+=(--rounds 1 --duration 1 --warmup 1 --startup-runs 3 --idle 0.2 --settle 0.5 --fresh-tokens 60000) ;;
    *) args+=("$arg") ;;
  esac
done

step "tools"
ensure_apt wrk util-linux valgrind
python=$(command -v python3)

step "build reference-service, examples/existing-service and the issuer stand-in (release)"
cargo build --release --locked -p reference-service -p example-existing-service -p issuer-standin
target_dir=$(cargo_target_dir)

step "build bare axum (release, the workspace's lock file and target directory)"
bare=scripts/bench/bare-axum
cp Cargo.lock "$bare/Cargo.lock"
CARGO_TARGET_DIR="$target_dir" cargo build --release --manifest-path "$bare/Cargo.toml"
# The comparison is only fair with the same versions of the server stack on both sides.
"$python" - "$bare/Cargo.lock" <<'PY'
import sys, tomllib
def versions(path):
    return {(p["name"], p["version"]) for p in tomllib.load(open(path, "rb"))["package"]}
bare, workspace = versions(sys.argv[1]), versions("Cargo.lock")
stack = {"axum", "axum-core", "tokio", "hyper", "hyper-util", "tower", "serde", "serde_json"}
differ = sorted(p for p in bare - workspace if p[0] in stack)
if differ:
    sys.exit(f"bare axum resolved other versions than the workspace: {differ}")
print("same versions of " + ", ".join(sorted(n + " " + v for n, v in bare if n in stack)))
PY

if $instructions; then
  step "instructions per request (callgrind)"
  exec "$python" scripts/bench/instructions.py --kit "$target_dir/release/reference-service" \
    --bare "$target_dir/release/bare-axum" "${args[@]+"${args[@]}"}"
fi

step "benchmark"
report=$(mktemp)
trap 'rm -f "$report"' EXIT
"$python" scripts/bench/run.py --kit "$target_dir/release/reference-service" \
  --bare "$target_dir/release/bare-axum" --parts "$target_dir/release/existing-service" \
  --issuer "$target_dir/release/issuer-standin" --markdown "$report" --json "$target_dir/bench-results.json" \
  "${args[@]+"${args[@]}"}"

if $write_doc; then
  "$python" - "$report" <<'PY'
import re, sys
from pathlib import Path
doc = Path("docs/performance.md")
text = doc.read_text()
begin, end = "<!-- bench:begin -->\n", "<!-- bench:end -->"
if begin not in text or end not in text:
    sys.exit("docs/performance.md has no bench markers")
head, rest = text.split(begin, 1)
doc.write_text(head + begin + Path(sys.argv[1]).read_text() + end + rest.split(end, 1)[1])
print("docs/performance.md updated")
PY
fi
