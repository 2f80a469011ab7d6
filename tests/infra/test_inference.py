"""InferenceService: Deployment, Service, HPA, PDB, ServiceMonitor and Istio routing with canary weights."""

from typing import Any

import kubernetes_validate
import pulumi
import pytest

from infra.k8s.inference import InferenceService, InferenceServiceArgs
from infra.k8s.podspec import Resources
from infra.review.engine import Graph, render_program

GATEWAY = "cluster.local/ns/istio-ingress/sa/istio-ingressgateway"


def _render(**overrides: Any) -> Graph:
    args: dict[str, Any] = {
        "namespace": "inference", "image": "ghcr.io/modelplane/serve:0.1.0", "model_name": "lm",
        "model_uri": "s3://models/lm/", "service_account": "model-server",
        "resources": Resources(cpu="4", memory="16Gi", gpus=1), "gpu_pool": "infer", "min_replicas": 2,
        "max_replicas": 8, "allowed_principals": [GATEWAY], "redis_url": pulumi.Output.secret("rediss://:t@h:6379/0"),
        "api_key": True, **overrides,
    }
    return render_program("test", lambda: InferenceService("lm", InferenceServiceArgs(**args)) and None)


@pytest.fixture(scope="module")
def graph() -> Graph:
    return _render()


def _deployment(graph: Graph, name: str = "lm-stable") -> dict[str, Any]:
    return graph.one("kubernetes:apps/v1:Deployment", name).inputs


def test_deployment_probes_hit_the_health_endpoints(graph: Graph) -> None:
    container = _deployment(graph)["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert container["startupProbe"]["failureThreshold"] * container["startupProbe"]["periodSeconds"] >= 300


def test_deployment_spreads_across_zones_and_runs_non_root(graph: Graph) -> None:
    pod = _deployment(graph)["spec"]["template"]["spec"]
    assert "topology.kubernetes.io/zone" in {c["topologyKey"] for c in pod["topologySpreadConstraints"]}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True


def test_gpu_service_tolerates_and_selects_its_pool(graph: Graph) -> None:
    pod = _deployment(graph)["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"modelplane.io/pool": "infer"}
    assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"


def test_model_uri_and_secrets_reach_the_server_by_reference(graph: Graph) -> None:
    env = {e["name"]: e for e in _deployment(graph)["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["MODELPLANE_SERVE_MODEL_URI"]["value"] == "s3://models/lm/"
    assert env["MODELPLANE_SERVE_REDIS_URL"]["valueFrom"]["secretKeyRef"]["key"] == "url"
    assert env["MODELPLANE_API_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "lm-api-key"
    assert env["MODELPLANE_SERVE_API_KEY_ENV"]["value"] == "MODELPLANE_API_KEY"
    secret = graph.one("kubernetes:core/v1:Secret", "lm-redis").inputs
    assert secret["stringData"] == "[secret]" or secret["stringData"]["url"] == "[secret]"


def test_hpa_scales_on_queue_depth_with_cpu_fallback(graph: Graph) -> None:
    hpa = graph.one("kubernetes:autoscaling/v2:HorizontalPodAutoscaler").inputs["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 8)
    assert hpa["metrics"][0]["pods"]["metric"]["name"] == "modelplane_inference_queue_depth"
    assert hpa["metrics"][1]["resource"]["name"] == "cpu"


def test_pdb_keeps_all_but_one_pod(graph: Graph) -> None:
    assert graph.one("kubernetes:policy/v1:PodDisruptionBudget").inputs["spec"]["maxUnavailable"] == 1


def test_virtual_service_routes_v1_and_v2_from_the_gateway(graph: Graph) -> None:
    vs = graph.one("kubernetes:networking.istio.io/v1:VirtualService").inputs["spec"]
    assert vs["gateways"] == ["istio-ingress/istio-ingressgateway"]
    assert [r["match"][0]["uri"]["prefix"] for r in vs["http"]] == ["/v1/", "/v2/"]
    assert all(r["timeout"] == "60s" and r["retries"]["attempts"] == 2 for r in vs["http"])


def test_canary_weight_splits_traffic_between_subsets() -> None:
    graph = _render(canary_image="ghcr.io/modelplane/serve:0.2.0", canary_weight=10)
    route = graph.one("kubernetes:networking.istio.io/v1:VirtualService").inputs["spec"]["http"][0]["route"]
    assert [(r["destination"]["subset"], r["weight"]) for r in route] == [("stable", 90), ("canary", 10)]
    subsets = graph.one("kubernetes:networking.istio.io/v1:DestinationRule").inputs["spec"]["subsets"]
    assert [s["name"] for s in subsets] == ["stable", "canary"]
    assert _deployment(graph, "lm-canary")["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":0.2.0")


def test_destination_rule_ejects_failing_pods(graph: Graph) -> None:
    policy = graph.one("kubernetes:networking.istio.io/v1:DestinationRule").inputs["spec"]["trafficPolicy"]
    assert policy["outlierDetection"]["consecutive5xxErrors"] == 5
    assert policy["tls"]["mode"] == "ISTIO_MUTUAL"


def test_authorization_policy_admits_only_the_listed_principals(graph: Graph) -> None:
    spec = graph.one("kubernetes:security.istio.io/v1:AuthorizationPolicy").inputs["spec"]
    assert spec["action"] == "ALLOW"
    assert spec["rules"][0]["from"][0]["source"]["principals"] == [GATEWAY]


def test_service_monitor_scrapes_metrics(graph: Graph) -> None:
    spec = graph.one("kubernetes:monitoring.coreos.com/v1:ServiceMonitor").inputs["spec"]
    assert spec["endpoints"][0] == {"port": "http", "path": "/metrics", "interval": "15s"}


def test_tf_serving_runtime_syncs_the_export_and_serves_rest() -> None:
    graph = _render(runtime="tf-serving", image="tensorflow/serving:2.20.0", resources=Resources(cpu="2", memory="4Gi"),
                    gpu_pool=None, redis_url=None, api_key=False)
    pod = _deployment(graph)["spec"]["template"]["spec"]
    assert pod["initContainers"][0]["command"][:3] == ["aws", "s3", "sync"]
    assert pod["containers"][0]["readinessProbe"]["httpGet"]["path"] == "/v1/models/lm"
    assert "--rest_api_port=8501" in pod["containers"][0]["args"]
    vs = graph.one("kubernetes:networking.istio.io/v1:VirtualService").inputs["spec"]
    assert vs["http"][0]["match"][0]["uri"]["prefix"] == "/v1/models/"


@pytest.mark.parametrize("kind", ["Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Secret"])
def test_core_kinds_validate_against_the_kubernetes_schema(graph: Graph, kind: str) -> None:
    for resource in graph.kubernetes_objects():
        if resource.inputs.get("kind") == kind:
            kubernetes_validate.validate(resource.inputs, "1.35", strict=True)


@pytest.mark.parametrize(("overrides", "prop"), [
    ({"min_replicas": 5, "max_replicas": 2}, "min_replicas"),
    ({"canary_weight": 20}, "canary_image"),
    ({"gpu_pool": None}, "gpu_pool"),
    ({"image": "ghcr.io/modelplane/serve:latest"}, "image"),
    ({"allowed_principals": []}, "allowed_principals"),
    ({"canary_weight": 120, "canary_image": "x:1"}, "canary_weight"),
])
def test_inference_args_are_validated(overrides: dict[str, Any], prop: str) -> None:
    with pytest.raises(pulumi.InputPropertiesError) as info:
        _render(**overrides)
    assert prop in {d["property_path"] for d in info.value.errors}
