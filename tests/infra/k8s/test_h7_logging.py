"""Fluent Bit's own monitoring (the chart's ServiceMonitor, Prometheus admitted to its HTTP port) and the joining
of Python tracebacks, on the rendered release and NetworkPolicies."""

from typing import Any

import yaml

from infra.k8s.logging import METRICS_PORT
from infra.k8s.observability import PROMETHEUS_POD_LABELS
from infra.review.graph import Graph
from tests.infra.k8s.test_logging import VENDORED_VALUES, _release, parse_classic
from tests.support.graph import render_variant

NETPOL = "kubernetes:networking.k8s.io/v1:NetworkPolicy"


def _logging_policies(graph: Graph) -> dict[str, dict[str, Any]]:
    return {r.inputs["metadata"]["name"]: r.inputs["spec"] for r in graph.of_type(NETPOL)
            if r.inputs["metadata"]["namespace"] == "logging"}


def test_fluent_bit_metrics_are_scraped_when_the_stack_runs_prometheus(prod: Graph) -> None:
    values = _release(prod)["values"]
    assert values["serviceMonitor"] == {"enabled": True}
    # The chart serves its metrics on `metricsPort`; we admit Prometheus to the chart's default.
    assert yaml.safe_load(VENDORED_VALUES.read_text())["config"]["service"].count("{{ .Values.metricsPort }}") == 1
    assert "metricsPort" not in values and METRICS_PORT == 2020
    policy = _logging_policies(prod)["allow-prometheus"]
    assert policy["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "fluent-bit"}}
    assert policy["policyTypes"] == ["Ingress"]
    ((rule,),) = [policy["ingress"]]
    assert rule["ports"] == [{"protocol": "TCP", "port": 2020}]
    (peer,) = rule["from"]
    assert peer["namespaceSelector"] == {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}
    assert peer["podSelector"] == {"matchLabels": dict(PROMETHEUS_POD_LABELS)}


def test_without_prometheus_no_service_monitor_and_no_ingress() -> None:
    graph = render_variant("dev", {"modelplane:observability": {"enabled": False}})
    assert "serviceMonitor" not in _release(graph)["values"]
    assert "allow-prometheus" not in _logging_policies(graph)
    assert {"allow-kube-api", "allow-aws"} <= set(_logging_policies(graph))


def test_python_tracebacks_are_joined_before_the_kubernetes_filter(stack_graph: Any) -> None:
    for stack in ("prod", "local"):
        release = _release(stack_graph(stack))
        ((_, tail),) = parse_classic(release["values"]["config"]["inputs"])
        assert [p.strip() for p in tail["multiline.parser"].split(",")] == ["docker", "cri"]
        (_, multiline), (_, kubernetes) = parse_classic(release["values"]["config"]["filters"])
        assert multiline == {"Name": "multiline", "Match": "kube.*", "multiline.key_content": "log",
                             "multiline.parser": "python", "buffer": "On", "flush_ms": "2000"}, stack
        assert kubernetes["Name"] == "kubernetes" and kubernetes["Match"] == multiline["Match"]
