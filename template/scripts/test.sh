#!/usr/bin/env bash
# Every check of {{project-name}}: formatting, lints, the tests (the real binary as a process: probes, SIGTERM,
# configuration errors){% if chart %}, and the chart (helm lint and render, when helm is installed){% endif %}.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "==> format"
cargo fmt --all -- --check
echo "==> clippy"
cargo clippy --all-targets -- -D warnings
echo "==> tests"
cargo test
{%- if chart %}
echo "==> chart"
if command -v helm >/dev/null 2>&1; then
  set -- {% if kvstore %}--set config.KVSTORE_URL=https://kvstore.example{% endif %}
  helm lint --strict chart "$@"
  helm template {{project-name}} chart "$@" >/dev/null
else
  echo "helm is not installed: chart checks skipped here (CI runs them)"
fi
{%- endif %}
