"""InferenceService with runtime recommend: the recommendation service's Deployment (CPU, /health probes, the features'
Redis by Secret), the gateway in front without a response cache, CPU HPAs, PDBs, the `/v1/recommendations` routes,
the mesh policy, scraping, and the dev/local stacks' entries."""

from collections.abc import Callable
from typing import Any

import pulumi
import pytest

from infra.config.workloads import InferenceServiceConfig
from infra.k8s.inference import InferenceService
from infra.review.engine import render_program
from infra.review.graph import Graph
from tests.support.graph import assert_kind_validates
from tests.support.training import TRAIN_JOB
from workloads.common.settings import API_KEY_FILE, REDIS_URL_FILE, SECRETS_DIR
from workloads.gateway.settings import GatewaySettings
from workloads.recommend.model_settings import ServiceSettings

INGRESS = "cluster.local/ns/istio-ingress/sa/istio-ingressgateway"
PROMETHEUS = "cluster.local/ns/monitoring/sa/prometheus"
IMAGE = "ghcr.io/modelplane/recommend:0.1.0"
SERVICE = {"name": "recs", "runtime": "recommend", "model": "recommender", "cpu": "1", "memory": "1Gi",
           "minReplicas": 2, "maxReplicas": 5}
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
HPA = "kubernetes:autoscaling/v2:HorizontalPodAutoscaler"
VS = "kubernetes:networking.istio.io/v1:VirtualService"
AUTHZ = "kubernetes:security.istio.io/v1:AuthorizationPolicy"
SECRET = "kubernetes:core/v1:Secret"


def _render(queue_depth_autoscaling: bool = True, **overrides: Any) -> Graph:
    svc = InferenceServiceConfig.model_validate({**SERVICE, **overrides})
    return render_program("test", lambda: InferenceService(
        "recs", svc, image=IMAGE, gateway_image="ghcr.io/modelplane/serve:0.1.0", namespace="inference",
        service_account="model-server", model_uri="s3://models/recommender/", allowed_principals=[INGRESS, PROMETHEUS],
        env={"AWS_ENDPOINT_URL": "http://minio:9000"}, secret_env_from=["s3-credentials"],
        redis_url=pulumi.Output.secret("redis://redis:6379/0"), queue_depth_autoscaling=queue_depth_autoscaling) and None)


@pytest.fixture(scope="module")
def graph() -> Graph:
    return _render()


def _pod(graph: Graph, name: str) -> dict[str, Any]:
    return graph.one(DEPLOYMENT, name).inputs["spec"]["template"]["spec"]


def _env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container["env"]}


def test_runtime_runs_the_recommendation_service_from_the_recommend_image(graph: Graph) -> None:
    (container,) = _pod(graph, "recs-model-stable")["containers"]
    assert container["image"] == IMAGE
    assert container["command"] == ["python", "-m", "workloads.recommend.service"]
    assert container["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert container["envFrom"] == [{"secretRef": {"name": "s3-credentials"}}]


def test_runtime_env_is_the_services_own_settings(graph: Graph) -> None:
    (container,) = _pod(graph, "recs-model-stable")["containers"]
    env = _env(container)
    plain = {name: e["value"] for name, e in env.items() if not e["value"].startswith(SECRETS_DIR)}
    settings = ServiceSettings.parse([], plain)
    assert (settings.model_uri, settings.port, settings.download_dir) == ("s3://models/recommender/", 8080, "/models")
    assert plain["AWS_ENDPOINT_URL"] == "http://minio:9000"
    # The features' Redis (with its password on AWS) comes from the Secret mounted as a file, never as a value.
    assert env[ServiceSettings.env_name("redis_url_file")]["value"] == f"{SECRETS_DIR}/{REDIS_URL_FILE}"
    assert {"secret": {"name": "recs-redis", "items": [{"key": "url", "path": REDIS_URL_FILE}]}} in next(
        v for v in _pod(graph, "recs-model-stable")["volumes"] if v["name"] == "secrets")["projected"]["sources"]
    assert graph.one(SECRET, "recs-redis").inputs["stringData"] == {"url": "[secret]"}


def test_runtime_probes_health(graph: Graph) -> None:
    (container,) = _pod(graph, "recs-model-stable")["containers"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/health", "port": "http"}


def test_runtime_runs_on_cpu_without_a_gpu_pool(graph: Graph) -> None:
    pod = _pod(graph, "recs-model-stable")
    assert "nodeSelector" not in pod and "tolerations" not in pod
    assert pod["containers"][0]["resources"] == {"requests": {"cpu": "1", "memory": "1Gi"},
                                                 "limits": {"cpu": "1", "memory": "1Gi"}}
    assert pod["serviceAccountName"] == "model-server"  # its role reads the models bucket


def test_gateway_fronts_the_runtime_without_a_response_cache(graph: Graph) -> None:
    (container,) = _pod(graph, "recs-stable")["containers"]
    assert container["command"] == ["python", "-m", "workloads.gateway"]
    assert container["image"] == "ghcr.io/modelplane/serve:0.1.0"
    env = _env(container)
    # A recommendation changes with every feature update: the gateway gets no Redis, so it caches nothing.
    assert GatewaySettings.env_name("redis_url_file") not in env
    assert env[GatewaySettings.env_name("upstream")]["value"] == "http://recs-model.inference.svc.cluster.local:80"
    assert env[GatewaySettings.env_name("api_keys_file")]["value"] == f"{SECRETS_DIR}/{API_KEY_FILE}"
    assert {"name": "secrets", "projected": {"defaultMode": 0o440, "sources": [
        {"secret": {"name": "recs-api-key", "items": [{"key": "api-key", "path": API_KEY_FILE}]}}]}} in _pod(
        graph, "recs-stable")["volumes"]
    assert [s.name for s in graph.of_type(SECRET)] == ["recs-api-key", "recs-redis"]


def test_gateway_waits_for_the_runtime_as_long_as_the_mesh_routes_allow() -> None:
    graph = _render(apiKey=False)
    (container,) = _pod(graph, "recs-stable")["containers"]
    settings = GatewaySettings.parse([], {e["name"]: e["value"] for e in container["env"]})
    assert (settings.upstream, settings.allow_anonymous, settings.redis_url) == (
        "http://recs-model.inference.svc.cluster.local:80", True, None)
    timeouts = {route["timeout"] for vs in ("recs-vs", "recs-model-vs") for route in graph.one(VS, vs).inputs["spec"]["http"]}
    assert timeouts == {f"{settings.read_timeout_s:.0f}s"} == {"60s"}


def test_both_tiers_scale_on_cpu_even_with_the_custom_metrics_there(graph: Graph) -> None:
    for name, target in (("recs-hpa", "recs"), ("recs-model-hpa", "recs-model")):
        hpa = graph.one(HPA, name).inputs["spec"]
        assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": target}
        assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 5)
        assert hpa["metrics"] == [{"type": "Resource", "resource": {
            "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}}]


def test_both_tiers_keep_a_pdb(graph: Graph) -> None:
    budgets = {r.name: r.inputs["spec"] for r in graph.of_type("kubernetes:policy/v1:PodDisruptionBudget")}
    assert budgets == {
        "recs-pdb": {"maxUnavailable": 1, "selector": {"matchLabels": {"app.kubernetes.io/name": "recs"}}},
        "recs-model-pdb": {"maxUnavailable": 1, "selector": {"matchLabels": {"app.kubernetes.io/name": "recs-model"}}}}


def test_ingress_routes_the_recommendations_prefix_to_the_gateway(graph: Graph) -> None:
    ingress = graph.one(VS, "recs-vs").inputs["spec"]
    assert ingress["gateways"] == ["istio-ingress/istio-ingressgateway"]
    (route,) = ingress["http"]
    assert (route["match"], route["rewrite"]) == ([{"uri": {"prefix": "/recs/v1/recommendations"}}],
                                                  {"uri": "/v1/recommendations"})
    assert route["route"] == [{"destination": {"host": "recs.inference.svc.cluster.local", "port": {"number": 80}}}]


def test_the_mesh_splits_the_runtime_canary_behind_the_one_gateway() -> None:
    graph = _render(canaryImage="ghcr.io/modelplane/recommend:0.2.0", canaryWeight=20)
    internal = graph.one(VS, "recs-model-vs").inputs["spec"]
    assert (internal["gateways"], internal["hosts"]) == (["mesh"], ["recs-model.inference.svc.cluster.local"])
    assert [(r["destination"]["subset"], r["weight"]) for r in internal["http"][0]["route"]] == [("stable", 80),
                                                                                              ("canary", 20)]
    assert _pod(graph, "recs-model-canary")["containers"][0]["image"] == "ghcr.io/modelplane/recommend:0.2.0"
    assert len(graph.of_type(DEPLOYMENT)) == 3  # one gateway track


def test_only_the_gateway_and_prometheus_reach_the_runtime(graph: Graph) -> None:
    runtime = graph.one(AUTHZ, "recs-model-authz").inputs["spec"]
    assert runtime["selector"] == {"matchLabels": {"app.kubernetes.io/name": "recs-model"}}
    assert runtime["rules"] == [
        {"from": [{"source": {"principals": ["cluster.local/ns/inference/sa/recs-gateway"]}}],
         "to": [{"operation": {"ports": ["8080"]}}]},
        {"from": [{"source": {"principals": [PROMETHEUS]}}],
         "to": [{"operation": {"ports": ["8080"], "methods": ["GET"], "paths": ["/metrics"]}}]}]
    gateway = graph.one(AUTHZ, "recs-authz").inputs["spec"]
    assert gateway["rules"] == [{"from": [{"source": {"principals": [INGRESS, PROMETHEUS]}}],
                                "to": [{"operation": {"ports": ["8080"]}}]}]


def test_both_tiers_are_scraped_by_the_namespace_wide_service_monitor(graph: Graph) -> None:
    # Observability's `modelplane-serving` ServiceMonitor selects component=inference in this namespace.
    for name in ("recs-svc", "recs-model-svc"):
        labels = graph.one("kubernetes:core/v1:Service", name).inputs["metadata"]["labels"]
        assert labels["app.kubernetes.io/component"] == "inference"
    assert not graph.of_type("kubernetes:monitoring.coreos.com/v1:ServiceMonitor")


def test_the_component_refuses_to_run_without_the_features_redis() -> None:
    svc = InferenceServiceConfig.model_validate(SERVICE)
    with pytest.raises(ValueError, match="runtime recommend needs redis_url"):
        render_program("test", lambda: InferenceService(
            "recs", svc, image=IMAGE, namespace="inference", service_account="model-server",
            model_uri="s3://models/recommender/", allowed_principals=[INGRESS]) and None)


@pytest.mark.parametrize("kind", ["Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Secret",
                                  "ServiceAccount"])
def test_core_kinds_validate_against_the_kubernetes_schema(graph: Graph, kind: str) -> None:
    assert_kind_validates(graph, kind)


@pytest.mark.parametrize("stack", ["dev", "local"])
def test_stack_serves_the_recommender_export_behind_the_gateway(stack_graph: Callable[[str], Graph], stack: str) -> None:
    graph = stack_graph(stack)
    (container,) = _pod(graph, "recommend-model-stable")["containers"]
    # dev pulls from its ECR repository by the recorded digest; local runs the local build.
    assert container["image"].startswith({"dev": "123456789012.dkr.ecr.us-east-1.amazonaws.com/modelplane/dev/"
                                                 "recommend@sha256:",
                                          "local": "ghcr.io/modelplane/recommend:0.1.0"}[stack])
    assert container["command"] == ["python", "-m", "workloads.recommend.service"]
    model_uri = _env(container)[ServiceSettings.env_name("model_uri")]["value"]
    args = graph.one(TRAIN_JOB, "recommender-job").inputs["spec"]["trainer"]["args"]
    assert model_uri == args[args.index("--export") + 1]  # the service loads what the job exports
    assert _env(container)[ServiceSettings.env_name("redis_url_file")]["value"] == f"{SECRETS_DIR}/{REDIS_URL_FILE}"
    gateway_env = _env(_pod(graph, "recommend-stable")["containers"][0])
    assert gateway_env[GatewaySettings.env_name("upstream")]["value"] == (
        "http://recommend-model.inference.svc.cluster.local:80")
    assert GatewaySettings.env_name("redis_url_file") not in gateway_env
    assert [m["type"] for m in graph.one(HPA, "recommend-model-hpa").inputs["spec"]["metrics"]] == ["Resource"]
    assert_kind_validates(graph, "Deployment")


def test_dev_routes_the_recommendations_prefix_through_the_mesh(stack_graph: Callable[[str], Graph]) -> None:
    (route,) = stack_graph("dev").one(VS, "recommend-vs").inputs["spec"]["http"]
    assert route["match"] == [{"uri": {"prefix": "/recommend/v1/recommendations"}}]
