"""Renders a Helm chart with the Helm engine (PyPI helm-python-sdk binds Helm's own Go SDK, as `helm template`
does) and prints its Kubernetes objects as one JSON list. Run by telemed-conform: render.py CHART [VALUES...]."""

import json
import sys

try:
    import helm_python as helm
    import yaml
except ImportError as error:
    print(f"{sys.executable} cannot import {error.name}: pip install helm-python-sdk PyYAML", file=sys.stderr)
    sys.exit(3)


def merge(base, override):
    out = dict(base)
    for key, value in override.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


values = {}
for path in sys.argv[2:]:
    with open(path, encoding="utf-8") as file:
        values = merge(values, helm.values_from_yaml(file.read()) or {})
try:
    with helm.Chart.load(sys.argv[1]) as chart:
        manifests = chart.render(values, name="conform", namespace="conform", is_install=True)
except Exception as error:  # Helm's values, render and load errors all carry Helm's own message.
    print(str(error).strip().replace("\n", " "), file=sys.stderr)
    sys.exit(4)
objects = []
for path in sorted(manifests):
    if path.endswith((".yaml", ".yml")):
        objects.extend(doc for doc in yaml.safe_load_all(manifests[path]) if doc)
json.dump(objects, sys.stdout)
