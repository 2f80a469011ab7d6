"""Mesh: Istio at one pinned version, STRICT mTLS, default-deny authorization with explicit allows."""

from collections.abc import Callable
from typing import Any

import pytest

from infra import versions
from infra.config.platform import MeshConfig
from infra.k8s.mesh import Mesh
from infra.review.engine import render_program
from infra.review.graph import HELM_RELEASE, Graph
from tests.support.graph import assert_count, assert_has_props, render_variant

AUTHZ = "kubernetes:security.istio.io/v1:AuthorizationPolicy"
PEER_AUTHN = "kubernetes:security.istio.io/v1:PeerAuthentication"
NAMESPACE = "kubernetes:core/v1:Namespace"
PROMETHEUS = "cluster.local/ns/monitoring/sa/prometheus"
GATEWAY = "cluster.local/ns/istio-ingress/sa/istio-ingressgateway"


def _istio_releases(graph: Graph) -> dict[str, dict[str, Any]]:
    return {r.inputs["chart"]: r.inputs for r in graph.of_type(HELM_RELEASE)
            if (r.inputs.get("repositoryOpts") or {}).get("repo") == versions.ISTIO_REPO}


def _policy(graph: Graph, namespace: str, name: str) -> dict[str, Any]:
    found = [r.inputs for r in graph.of_type(AUTHZ) if r.inputs["metadata"] == {"namespace": namespace, "name": name}]
    assert len(found) == 1, f"expected one AuthorizationPolicy {namespace}/{name}, found {len(found)}"
    return found[0]


def _namespace_labels(graph: Graph, name: str) -> dict[str, str]:
    return next(r.inputs["metadata"]["labels"] for r in graph.of_type(NAMESPACE) if r.inputs["metadata"]["name"] == name)


def test_mesh_defaults() -> None:
    graph = render_program("test", lambda: Mesh("mesh", MeshConfig(), aws_load_balancer=True, scrape_principals=[])
                           and None)
    releases = _istio_releases(graph)
    assert {r["version"] for r in releases.values()} == {versions.ISTIO_VERSION}
    assert releases["istiod"]["values"]["autoscaleMin"] == 2
    assert releases["gateway"]["values"]["autoscaling"] == {"minReplicas": 2}
    scheme = releases["gateway"]["values"]["service"]["annotations"]["service.beta.kubernetes.io/aws-load-balancer-scheme"]
    assert scheme == "internal"
    # Without scrape principals no namespace admits metrics scrapes; every one still denies by default.
    assert sorted(r.name for r in graph.of_type(AUTHZ)) == [
        "mesh-inference-allow-ingress-gateway", "mesh-inference-default-deny", "mesh-training-default-deny"]


def test_istio_charts_install_at_one_pinned_version(prod: Graph) -> None:
    releases = _istio_releases(prod)
    assert set(releases) == {"base", "cni", "istiod", "gateway"}
    assert {r["version"] for r in releases.values()} == {versions.ISTIO_VERSION}
    assert {r["name"]: r["namespace"] for r in releases.values()} == {
        "istio-base": "istio-system", "istio-cni": "istio-system", "istiod": "istio-system",
        "istio-ingressgateway": "istio-ingress"}


def test_mesh_wide_mtls_is_strict(prod: Graph) -> None:
    policy = prod.one(PEER_AUTHN).inputs
    assert policy["metadata"] == {"name": "default", "namespace": "istio-system"}
    assert policy["spec"] == {"mtls": {"mode": "STRICT"}}


@pytest.mark.parametrize("namespace", ["inference", "training"])
def test_every_workload_namespace_denies_all_by_default(prod: Graph, namespace: str) -> None:
    assert _policy(prod, namespace, "default-deny")["spec"] == {}


def test_only_the_ingress_gateway_principal_is_allowed_into_inference(prod: Graph) -> None:
    assert _policy(prod, "inference", "allow-ingress-gateway")["spec"] == {
        "action": "ALLOW", "rules": [{"from": [{"source": {"principals": [GATEWAY]}}]}]}
    assert not [r for r in prod.of_type(AUTHZ) if r.inputs["metadata"] == {"namespace": "training",
                                                                           "name": "allow-ingress-gateway"}]


@pytest.mark.parametrize("namespace", ["inference", "training"])
def test_prometheus_may_only_get_the_metrics_paths(prod: Graph, namespace: str) -> None:
    assert _policy(prod, namespace, "allow-metrics-scrape")["spec"] == {
        "action": "ALLOW",
        "rules": [{"from": [{"source": {"principals": [PROMETHEUS]}}],
                   "to": [{"operation": {"methods": ["GET"], "paths": ["/metrics", "/monitoring/prometheus/metrics"]}}]}],
    }


def test_gateway_principal_is_the_service_account_the_chart_creates(prod: Graph) -> None:
    # The gateway chart names its ServiceAccount after the release (templates/_helpers.tpl gateway.serviceAccountName).
    gateway = _istio_releases(prod)["gateway"]
    (rule,) = _policy(prod, "inference", "allow-ingress-gateway")["spec"]["rules"]
    assert rule["from"][0]["source"]["principals"] == [f"cluster.local/ns/{gateway['namespace']}/sa/{gateway['name']}"]


def test_serving_is_injected_and_training_never_is(prod: Graph) -> None:
    assert _namespace_labels(prod, "inference")["istio-injection"] == "enabled"
    assert _namespace_labels(prod, "training")["istio-injection"] == "disabled"
    assert _namespace_labels(prod, "training")["pod-security.kubernetes.io/enforce"] == "restricted"


def test_sidecars_use_the_cni_agent_so_restricted_namespaces_admit_them(prod: Graph) -> None:
    assert _istio_releases(prod)["istiod"]["values"]["pilot"] == {"cni": {"enabled": True}}
    assert _namespace_labels(prod, "istio-system")["pod-security.kubernetes.io/enforce"] == "privileged"
    assert _namespace_labels(prod, "istio-ingress")["pod-security.kubernetes.io/enforce"] == "baseline"


def test_control_plane_and_gateway_keep_two_replicas(prod: Graph) -> None:
    releases = _istio_releases(prod)
    assert releases["istiod"]["values"]["autoscaleMin"] == 2
    assert releases["gateway"]["values"]["autoscaling"] == {"minReplicas": 2}
    assert releases["istiod"]["values"]["meshConfig"] == {"trustDomain": "cluster.local"}


def test_gateway_is_an_internal_nlb_by_default(prod: Graph) -> None:
    assert _istio_releases(prod)["gateway"]["values"]["service"] == {"type": "LoadBalancer", "annotations": {
        "service.beta.kubernetes.io/aws-load-balancer-type": "external",
        "service.beta.kubernetes.io/aws-load-balancer-nlb-target-type": "ip",
        "service.beta.kubernetes.io/aws-load-balancer-scheme": "internal",
    }}


def test_ingress_gateway_object_is_the_one_inference_services_route_through(prod: Graph) -> None:
    meta = prod.one("kubernetes:networking.istio.io/v1:Gateway").inputs["metadata"]
    routes = prod.of_type("kubernetes:networking.istio.io/v1:VirtualService")
    assert routes
    for route in routes:
        assert route.inputs["spec"]["gateways"] == [f"{meta['namespace']}/{meta['name']}"], route.urn


def test_ingress_gateway_object_selects_the_gateway_pods_on_port_80(prod: Graph) -> None:
    gateway = prod.one("kubernetes:networking.istio.io/v1:Gateway").inputs
    # The gateway chart labels its pods istio=<release name without "istio-">.
    assert gateway["spec"]["selector"] == {"istio": "ingressgateway"}
    assert gateway["spec"]["servers"] == [{"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": ["*"]}]


def test_gateway_scheme_and_replicas_come_from_config() -> None:
    graph = render_variant("dev", {"modelplane:mesh": {"gatewayScheme": "internet-facing", "replicas": 3}})
    releases = _istio_releases(graph)
    annotations = releases["gateway"]["values"]["service"]["annotations"]
    assert annotations["service.beta.kubernetes.io/aws-load-balancer-scheme"] == "internet-facing"
    assert releases["istiod"]["values"]["autoscaleMin"] == 3


def test_mesh_can_be_turned_off() -> None:
    graph = render_variant("dev", {"modelplane:mesh": {"enabled": False}})
    assert not _istio_releases(graph)
    assert_count(graph, AUTHZ, 0)
    assert_count(graph, PEER_AUTHN, 0)
    assert "istio-injection" not in _namespace_labels(graph, "inference")
    # Prometheus then scrapes serving pods in plain http, without a certificate sidecar.
    for monitor in graph.of_type("kubernetes:monitoring.coreos.com/v1:ServiceMonitor"):
        assert "scheme" not in monitor.inputs["spec"]["endpoints"][0], monitor.name


def test_local_stack_has_no_mesh_unless_asked(stack_graph: Callable[[str], Graph]) -> None:
    assert not _istio_releases(stack_graph("local"))
    graph = render_variant("local", {"modelplane:mesh": {"enabled": True, "replicas": 1}})
    assert set(_istio_releases(graph)) == {"base", "cni", "istiod", "gateway"}
    # No AWS Load Balancer Controller outside AWS: a plain LoadBalancer Service.
    assert _istio_releases(graph)["gateway"]["values"]["service"] == {"type": "LoadBalancer", "annotations": {}}
    assert_has_props(graph, PEER_AUTHN, {"spec": {"mtls": {"mode": "STRICT"}}})
