#!/usr/bin/env bash
# Negative controls: suites that pass in scripts/test-telemetry.sh are run once more against a planted fault, and
# must fail it, for the planted reason. A control that passes means the suite cannot see that fault.
#
# 1. Log model: the real reference service behind a filter that drops `id` from its access lines (a log line
#    without the request's trace id). The whole telemetry suite runs (the log model reads every line of the
#    session); test_every_line_the_services_wrote_follows_the_log_model, and only it, must fail, on "access line
#    without id".
# 2. B3 interop: the reference service built from a copy of this tree in which the kit's B3 parser also takes
#    upper-case hex (the copy is patched; the tree itself is never touched). tests/telemetry/test_b3_interop.py
#    must fail test_upper_case_ids_are_malformed_and_start_a_new_trace, and only it. The planted artifacts are
#    removed from the target directory afterwards, and the tree's own service is built again.
# 3. Rolling restarts, missing route: the coexistence round of tests/reliability/rolling.py with the kit's
#    testbed (a kit service without `GET /` or the settings API) as the previous release. It must fail before any
#    load, with RouteMissing naming the testbed's two missing routes and not this tree's service: the round never
#    narrows the load to what a build serves. Seconds: two instances start and are asked for each route.
#
# Each suite's pytest must exit 1 (tests failed): a run that errors, collects nothing or passes fails the control.
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"
cd "$ROOT"

step "tools"
ensure_apt iproute2 util-linux haproxy
ensure_venv scripts/requirements-telemetry.txt scripts/requirements-auth.txt

target_dir=$(cargo_target_dir)
work="$target_dir/negative-controls"
rm -rf "$work"
mkdir -p "$work"

# expect_failure NAME EXPECTED_FAILED_TEST... -- PYTEST_ARGS...: runs pytest in a network namespace of its own
# (as scripts/test-telemetry.sh does) and checks that it failed, with exactly the expected tests failing.
expect_failure() {
  local name=$1
  shift
  local expected=()
  while [ "$1" != -- ]; do
    expected+=("$1")
    shift
  done
  shift
  local log="$work/$name.log" status=0
  # shellcheck disable=SC2016 # expanded by the inner sh, which gets the arguments after the script
  unshare --net -- sh -c 'ip link set lo up && exec "$0" -m pytest -p no:cacheprovider -q -rf "$@"' \
    "$VENV/bin/python" "$@" >"$log" 2>&1 || status=$?
  tail -5 "$log"
  if [ "$status" -ne 1 ]; then
    echo "negative control '$name': pytest exited $status, not 1 (tests failed); see $log" >&2
    return 1
  fi
  local failed
  failed=$(sed -n 's/^FAILED \([^ ]*\).*/\1/p' "$log" | sed 's/\[.*//' | sort -u)
  local want
  want=$(printf '%s\n' "${expected[@]}" | sort -u)
  if [ "$failed" != "$want" ]; then
    echo "negative control '$name': expected exactly these tests to fail:" >&2
    echo "$want" >&2
    echo "but these failed:" >&2
    echo "$failed" >&2
    return 1
  fi
  echo "negative control '$name': failed as it must ($(echo "$failed" | tr '\n' ' '))"
}

step "build reference-service"
# The packages scripts/test-rolling.sh builds (rolling.py takes issuer-standin from the stand-in's folder), and the
# testbed (control 3) with them, so that the features cargo unifies across them, and so the artifacts, are the
# ones the later steps use: nothing builds twice.
cargo build --locked -q -p reference-service -p kvstore-standin -p issuer-standin -p kit-testbed
real_binary="$target_dir/debug/reference-service"

step "negative control: the rolling coexistence round, with a previous build that lacks the mix's routes"
rolling_log="$work/rolling-route-missing.log"
status=0
python3 tests/reliability/rolling.py --profile ci --only coexistence \
  --service "$real_binary" --standin "$target_dir/debug/kvstore-standin" \
  --previous "$target_dir/debug/kit-testbed" --previous-label kit-testbed \
  --run-dir "$work/rolling-route-missing" >"$rolling_log" 2>&1 || status=$?
tail -3 "$rolling_log"
# Exactly the missing routes of the testbed, in the order the round asks for them; this tree's service, asked
# too, must not be named. Any other failure (an instance that never got ready, a load failure) is not this one.
reason=$(sed -n 's/^RouteMissing: //p' "$rolling_log")
want="kit-testbed does not serve GET / (404), GET /settings/rolling-read (404)"
if [ "$status" -ne 1 ] || [ "$reason" != "$want" ] || ! grep -qx "0 passed, 1 failed" "$rolling_log"; then
  echo "negative control 'rolling-route-missing': expected exit 1, '0 passed, 1 failed' and" >&2
  echo "  RouteMissing: $want" >&2
  echo "got exit $status and RouteMissing: '${reason:-(none)}'; see $rolling_log" >&2
  exit 1
fi
echo "negative control 'rolling-route-missing': failed as it must (RouteMissing: $reason)"

step "negative control: the log model, on access lines without id"
filter="$work/drop-id"
cat >"$filter" <<EOF
#!/usr/bin/env python3
"""The reference service with \`id\` dropped from its access lines (a planted fault)."""
import json, signal, subprocess, sys

child = subprocess.Popen(["$real_binary"], stdout=subprocess.PIPE, text=True, bufsize=1)
for number in (signal.SIGTERM, signal.SIGINT):
    signal.signal(number, lambda received, _frame: child.send_signal(received))
for line in child.stdout:
    try:
        fields = json.loads(line)
    except ValueError:
        fields = None
    if isinstance(fields, dict) and fields.get("subject") == "access" and "id" in fields:
        del fields["id"]
        line = json.dumps(fields, ensure_ascii=False, separators=(",", ":")) + "\n"
    sys.stdout.write(line)
    sys.stdout.flush()
sys.exit(child.wait())
EOF
chmod +x "$filter"
if ! REFERENCE_SERVICE_BIN="$filter" expect_failure log-model-without-id \
  tests/telemetry/test_log_model.py::test_every_line_the_services_wrote_follows_the_log_model -- \
  tests/telemetry; then
  exit 1
fi
grep -q "access line without id" "$work/log-model-without-id.log" || {
  echo "negative control 'log-model-without-id' failed, but not on the missing id" >&2
  exit 1
}

step "negative control: B3 interop, with a parser that takes upper-case hex"
copy="$work/b3-upper-case"
mkdir -p "$copy"
git ls-files -z --cached --others --exclude-standard | tar --null -T - -c | tar -x -C "$copy"
# The plant: every hex field is lower-cased before the kit's lower-case-only hex reader sees it.
python3 - "$copy/crates/telemed-kit/src/telemetry/trace/b3" <<'EOF'
import pathlib, re, sys

signature = re.compile(r"(fn lower_hex\(text: &str\) -> Option<u128> \{\n)")
hits = [path for path in sorted(pathlib.Path(sys.argv[1]).rglob("*.rs")) if signature.search(path.read_text())]
if len(hits) != 1:
    sys.exit(f"the plant needs exactly one `fn lower_hex(text: &str) -> Option<u128>` in the B3 parser, found "
             f"{len(hits)}: update scripts/negative-controls.sh to the parser's new shape")
source = hits[0].read_text()
hits[0].write_text(signature.sub(r"\1    let text = &text.to_ascii_lowercase();\n", source, count=1))
print(f"planted in {hits[0]}")
EOF
# Built in the workspace's target directory so that only the kit and the service compile anew. Cargo names the
# copy's artifacts as it names this tree's own (its hashes do not depend on where a workspace lies), so a later
# build here could take the planted kit as fresh: once the planted binary is copied out, the kit's, the stand-in's
# and the service's artifacts go, and the tree's own service is built again.
(cd "$copy" && CARGO_TARGET_DIR="$target_dir" cargo build --locked -q -p reference-service)
planted="$work/reference-service-b3-upper-case"
cp "$real_binary" "$planted"
cargo clean --quiet --package telemed-kit --package kvstore-standin --package reference-service
cargo build --locked -q -p reference-service
if [ "$(sha256sum "$planted" | cut -d' ' -f1)" = "$(sha256sum "$real_binary" | cut -d' ' -f1)" ]; then
  echo "the planted build is the same binary as this tree's own: the plant did not take" >&2
  exit 1
fi
REFERENCE_SERVICE_BIN="$planted" expect_failure b3-interop-upper-case \
  tests/telemetry/test_b3_interop.py::test_upper_case_ids_are_malformed_and_start_a_new_trace -- \
  tests/telemetry/test_b3_interop.py

echo
echo "negative controls: each suite failed its planted fault"
