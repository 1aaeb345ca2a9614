#!/usr/bin/env bash
# Image tests: hadolint and checkov on the Dockerfile, then the Dockerfile's own runtime stage built with podman
# around the release binary built here, and run the way the platform runs it (read-only root filesystem, tmpfs
# /tmp, the image's user, the binary as PID 1, SIGTERM with a 10 s grace period and a request in flight), and
# checked by telemed-conform --image (tests/image/test_conform_image.py).
# Installs what it needs (cached), and ends with pytest's summary line.
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"
cd "$ROOT"

step "tools"
ensure_apt podman iproute2 util-linux busybox-static
ensure_venv scripts/requirements-chart.txt scripts/requirements-auth.txt
VENV="$ROOT/.venv/checkov" ensure_venv scripts/requirements-checkov.txt

step "build reference-service (release)"
cargo build --release --locked -p reference-service
target_dir=$(cargo_target_dir)
export REFERENCE_SERVICE_RELEASE_BIN="$target_dir/release/reference-service"

step "build telemed-conform"
cargo build --locked -p telemed-conform
export TELEMED_CONFORM_BIN="$target_dir/debug/telemed-conform"

step "image tests"
# A network namespace of its own (loopback only): the container joins it (`--network host` inside the tests),
# so the service listens on its real port 8080 without meeting anything else on the machine.
# SANDBOX-ONLY workarounds, harmless elsewhere: a private mount namespace in which the cgroup v2 "unified"
# mount (which this sandbox's hybrid cgroup layout exposes but does not delegate) is unmounted, so that crun
# falls back to the v1 controllers; and fixed nofile/nproc ulimits for the container (TEST_PODMAN_ULIMITS),
# since podman's defaults exceed the sandbox's hard limits.
export TEST_PODMAN_ULIMITS="--ulimit nofile=20000:20000 --ulimit nproc=32768:32768"
# shellcheck disable=SC2016 # expanded by the inner sh, which gets the arguments after the script
exec unshare --net --mount --propagation private -- sh -c '
  ip link set lo up
  if mountpoint -q /sys/fs/cgroup/unified; then umount /sys/fs/cgroup/unified; fi
  exec "$0" -m pytest -p no:cacheprovider -q tests/image' "$VENV/bin/python"
