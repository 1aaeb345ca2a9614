"""Bad values are rejected before anything reaches a cluster, each with a message naming the value.

Types, ranges, formats and required keys are checked by values.schema.json; rules between two values (JSON
Schema cannot compare values) by chart/templates/_helpers.tpl `telemed.validate`. Helm checks both on install,
upgrade and template; `helm lint` checks the schema only (lint turns template `fail` calls into log lines).
"""

from __future__ import annotations

import copy

import pytest

KVSTORE = {"KVSTORE_URL": "https://kvstore.inttest.ehealth.sundhed.dk"}

# (case, values, text the message must contain)
BAD_VALUES = [
    ("missing KVSTORE_URL", {}, "missing property 'KVSTORE_URL'"),
    ("empty KVSTORE_URL", {"config": {"KVSTORE_URL": ""}}, "/config/KVSTORE_URL"),
    ("KVSTORE_URL not a URL", {"config": {"KVSTORE_URL": "kvstore.inttest"}}, "/config/KVSTORE_URL"),
    ("string replicas", {"replicaCount": "3"}, "/replicaCount': got string, want integer"),
    ("zero replicas", {"replicaCount": 0}, "/replicaCount"),
    ("delay equal to grace", {"shutdown": {"gracePeriodSeconds": 10, "delaySeconds": 10}},
     "shutdown.delaySeconds=10 must be at most shutdown.gracePeriodSeconds - 2.5 = 7.5"),
    ("delay leaves no drain time", {"shutdown": {"gracePeriodSeconds": 10, "delaySeconds": 8}},
     "shutdown.delaySeconds=8 must be at most"),
    ("grace as a duration string", {"shutdown": {"gracePeriodSeconds": "10s"}},
     "/shutdown/gracePeriodSeconds': got string, want integer"),
    ("grace below the kit's floor", {"shutdown": {"gracePeriodSeconds": 2, "delaySeconds": 0}},
     "/shutdown/gracePeriodSeconds"),
    ("negative delay", {"shutdown": {"delaySeconds": -1}}, "/shutdown/delaySeconds"),
    ("unknown top-level key", {"replicas": 3}, "additional properties 'replicas' not allowed"),
    ("misspelt kit variable", {"config": {"LOG_LEVLE": "debug"}}, "'LOG_LEVLE' not allowed"),
    ("PORT set through config", {"config": {"PORT": "9000"}}, "'PORT' not allowed"),
    ("PORT set through extraEnv", {"extraEnv": [{"name": "PORT", "value": "9000"}]},
     "extraEnv must not set PORT: set containerPort"),
    ("extraEnv name not a variable name", {"extraEnv": [{"name": "MY-VAR", "value": "1"}]}, "/extraEnv/0/name"),
    ("unknown log format", {"config": {"LOG_FORMAT": "xml"}}, "/config/LOG_FORMAT"),
    ("duration without unit", {"config": {"OUTBOUND_TIMEOUT": "5"}}, "/config/OUTBOUND_TIMEOUT"),
    ("sampler ratio above 1", {"config": {"OTEL_TRACES_SAMPLER_ARG": 2}}, "/config/OTEL_TRACES_SAMPLER_ARG"),
    ("service name with a space", {"config": {"OTEL_SERVICE_NAME": "my service"}}, "/config/OTEL_SERVICE_NAME"),
    ("privileged port", {"containerPort": 80}, "/containerPort"),
    ("port as string", {"containerPort": "8080"}, "/containerPort': got string, want integer"),
    ("maxUnavailable above 0", {"rollingUpdate": {"maxUnavailable": 1}}, "/rollingUpdate/maxUnavailable"),
    ("malformed digest", {"image": {"digest": "sha256:abc"}}, "/image/digest"),
    ("tag in the repository", {"image": {"repository": "ghcr.io/x/y:1.0"}}, "/image/repository"),
    ("probe path without slash", {"probes": {"readinessPath": "healthz"}}, "/probes/readinessPath"),
    ("resources without limits", {"resources": {"limits": None}}, "missing property 'limits'"),
    ("metrics on the app port", {"metrics": {"port": 8080}}, "metrics.port=8080 must differ from containerPort"),
    ("PDB blocks every drain", {"replicaCount": 1}, "podDisruptionBudget.minAvailable=1 must be below the replica"),
    ("HPA min above max", {"autoscaling": {"enabled": True, "minReplicas": 5, "maxReplicas": 3}},
     "autoscaling.minReplicas=5 must not exceed autoscaling.maxReplicas=3"),
    ("HPA target out of range", {"autoscaling": {"targetCPUUtilizationPercentage": 0}},
     "/autoscaling/targetCPUUtilizationPercentage"),
    ("unknown whenUnsatisfiable", {"topologySpread": [{"topologyKey": "x", "maxSkew": 1,
                                                         "whenUnsatisfiable": "Sometimes"}]},
     "/topologySpread/0/whenUnsatisfiable"),
]


def with_required(values: dict) -> dict:
    """`values` with a valid KVSTORE_URL added where the case does not set one itself."""
    values = copy.deepcopy(values)
    values.setdefault("config", {}).setdefault("KVSTORE_URL", KVSTORE["KVSTORE_URL"])
    return values


@pytest.mark.parametrize("case, values, message", BAD_VALUES, ids=[case for case, _, _ in BAD_VALUES])
def test_bad_values_are_rejected_with_a_clear_message(chart, case, values, message):
    values = copy.deepcopy(values) if case == "missing KVSTORE_URL" else with_required(values)
    with pytest.raises(chart.ChartError) as rejected:
        chart.render(values)
    assert message in str(rejected.value)


def test_lint_rejects_what_the_schema_rejects(chart):
    problems = chart.lint(with_required({"replicaCount": "3"}))
    assert any("/replicaCount': got string, want integer" in problem for problem in problems), problems


GOOD_EDGES = [
    ("delay at its maximum", {"shutdown": {"gracePeriodSeconds": 10, "delaySeconds": 7.5}}),
    ("shortest grace period", {"shutdown": {"gracePeriodSeconds": 3, "delaySeconds": 0.5}}),
    ("no delay", {"shutdown": {"gracePeriodSeconds": 10, "delaySeconds": 0}}),
    ("plain http store in a test cluster", {"config": {"KVSTORE_URL": "http://kvstore.test:8080/base"}}),
    ("sampler ratio as string", {"config": {"OTEL_TRACES_SAMPLER_ARG": "0.5"}}),
    ("compound duration", {"config": {"OUTBOUND_TIMEOUT": "1m 30s", "OUTBOUND_CONNECT_TIMEOUT": "500ms"}}),
    ("cache off as string", {"config": {"CACHE_DISABLED": "true"}}),
    ("one replica without PDB", {"replicaCount": 1, "podDisruptionBudget": {"enabled": False}}),
    ("percentage surge", {"rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}}),
]


@pytest.mark.parametrize("case, values", GOOD_EDGES, ids=[case for case, _ in GOOD_EDGES])
def test_edge_values_are_accepted(chart, case, values):
    assert chart.objects(chart.render(with_required(values)))
