#!/usr/bin/env bash
# Every check of {{project-name}}: formatting, lints, the tests (the real binary as a process: probes, SIGTERM,
# configuration errors){% if chart %}, and the chart (helm lint and render, with Helm's engine from PyPI){% endif %}.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "==> format"
cargo fmt --all -- --check
echo "==> clippy"
cargo clippy --all-targets -- -D warnings
echo "==> tests"
cargo test
{%- if chart %}
echo "==> chart (Helm's own engine: helm-python-sdk from PyPI, no helm binary needed)"
# Lint (strict) and render with the same Go code as `helm lint` and `helm template`. A missing Python or a failed
# install fails the checks: they always run.
venv=.venv
if ! "$venv/bin/python" -c 'import helm_python' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check helm-python-sdk==0.2.2
fi
"$venv/bin/python" - chart{% if kvstore %} config.KVSTORE_URL=https://kvstore.example{% endif %}
{%- if auth %} config.AUTH_ISSUER=https://issuer.example/auth/realms/ehealth{% endif %} <<'PY'
import sys

import helm_python as helm

chart, sets = sys.argv[1], sys.argv[2:]
# One --set string, as Helm joins repeated --set flags: each key lands in the same nested values.
values = helm.parse_set_string(",".join(sets)) if sets else {}
report = helm.lint(chart, values, strict=True)
problems = [f"{m['path']}: {m['error'].strip()}" for m in report["messages"] if m["severity"] >= 2]
problems += [error.strip() for error in report.get("errors", [])]
try:
    with helm.Chart.load(chart) as loaded:
        manifests = loaded.render(values, name="{{project-name}}", namespace="default", is_install=True)
except (helm.HelmValuesError, helm.HelmRenderError) as error:
    problems.append(f"render: {error}")
    manifests = {}
if problems:
    print("chart checks failed:", *problems, sep="\n  ", file=sys.stderr)
    sys.exit(1)
if not any("kind: Deployment" in text for text in manifests.values()):
    sys.exit("chart checks failed: the render has no Deployment")
print(f"chart: helm lint --strict clean, {len(manifests)} templates rendered")
PY
{%- endif %}
