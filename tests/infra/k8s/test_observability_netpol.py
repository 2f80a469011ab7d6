"""The monitoring namespace admits the API server only where it calls: the prometheus-operator's admission webhook and
prometheus-adapter's aggregated API, each on its own pod and port (evaluated with tests/support/netpol.py)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from infra.k8s.observability import ADAPTER_PORT, NAMESPACE, OPERATOR_WEBHOOK_PORT
from infra.review.graph import Graph
from tests.support.netpol import NetworkModel, external, pod

API_SERVER = external("10.0.100.5")
"""The control plane calling in from an address of the VPC (not a pod)."""
# Each pod with the full label set its chart's templates give it, not only our selector's labels.
OPERATOR = pod(NAMESPACE, {  # kube-prometheus-stack 88.5.3 templates/prometheus-operator/_prometheus-operator.tpl
    "app": "kube-prometheus-stack-operator", "release": "kube-prometheus-stack", "heritage": "Helm",
    "app.kubernetes.io/name": "kube-prometheus-stack-prometheus-operator",
    "app.kubernetes.io/component": "prometheus-operator", "app.kubernetes.io/instance": "kube-prometheus-stack"},
    "10.0.3.32")
ADAPTER = pod(NAMESPACE, {  # prometheus-adapter 5.3.0 templates/_helpers.tpl labels
    "app.kubernetes.io/name": "prometheus-adapter", "app.kubernetes.io/instance": "prometheus-adapter",
    "app.kubernetes.io/component": "metrics", "app.kubernetes.io/part-of": "prometheus-adapter"}, "10.0.3.33")
GRAFANA = pod(NAMESPACE, {"app.kubernetes.io/name": "grafana", "app.kubernetes.io/instance": "kube-prometheus-stack"},
              "10.0.3.31")
KUBE_STATE_METRICS = pod(NAMESPACE, {"app.kubernetes.io/name": "kube-state-metrics",
                                     "app.kubernetes.io/instance": "kube-prometheus-stack"}, "10.0.3.34")


@pytest.mark.parametrize("name", ["dev", "staging", "prod"])  # local has no monitoring stack
def test_the_api_server_reaches_the_webhook_and_the_adapter_only(stack_graph: Callable[[str], Graph], name: str) -> None:
    model = NetworkModel(stack_graph(name))
    assert model.admits(API_SERVER, OPERATOR, OPERATOR_WEBHOOK_PORT)
    assert model.admits(API_SERVER, ADAPTER, ADAPTER_PORT)
    # Each port on its own pod only: not the other one's port, and no other pod on either.
    assert not model.admits(API_SERVER, OPERATOR, ADAPTER_PORT)
    assert not model.admits(API_SERVER, ADAPTER, OPERATOR_WEBHOOK_PORT)
    for other in (GRAFANA, KUBE_STATE_METRICS):
        for port in (OPERATOR_WEBHOOK_PORT, ADAPTER_PORT):
            assert not model.admits(API_SERVER, other, port), (other.labels, port)
