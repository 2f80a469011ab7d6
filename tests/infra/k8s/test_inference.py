"""InferenceService: Deployment, Service, HPA, PDB and Istio routing with canary weights, from an `inference.services`
entry."""

from collections.abc import Callable
from typing import Any

import pulumi
import pytest

from infra.config.workloads import InferenceServiceConfig
from infra.k8s.inference import InferenceService
from infra.review.engine import render_program
from infra.review.graph import Graph
from tests.support.graph import assert_kind_validates
from workloads.common.settings import API_KEY_FILE, REDIS_URL_FILE, SECRETS_DIR
from workloads.serve.settings import ServeSettings, env_name

GATEWAY = "cluster.local/ns/istio-ingress/sa/istio-ingressgateway"
SERVICE = {"name": "lm", "model": "lm-small", "cpu": "4", "memory": "16Gi", "gpus": 1, "gpuPool": "infer",
           "minReplicas": 2, "maxReplicas": 8, "maxBatchSize": 32, "maxQueue": 64, "maxTokensCap": 256}


def _render(image: str = "ghcr.io/modelplane/serve:0.1.0", **overrides: Any) -> Graph:
    svc = InferenceServiceConfig.model_validate({**SERVICE, **overrides})
    return render_program("test", lambda: InferenceService(
        "lm", svc, image=image, namespace="inference", service_account="model-server", model_uri="s3://models/lm/",
        allowed_principals=[GATEWAY], env={"AWS_ENDPOINT_URL": "http://minio:9000"},
        secret_env_from=["s3-credentials"], redis_url=pulumi.Output.secret("rediss://:t@h:6379/0")) and None)


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


def test_server_settings_come_from_the_service_entry(graph: Graph) -> None:
    container = _deployment(graph)["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert {key: env[key] for key in env if key.startswith("MODELPLANE_SERVE_") and "KEY" not in key
            and "REDIS" not in key} == {
        "MODELPLANE_SERVE_MODEL_URI": "s3://models/lm/", "MODELPLANE_SERVE_MODEL_NAME": "lm",
        "MODELPLANE_SERVE_PORT": "8080", "MODELPLANE_SERVE_DOWNLOAD_DIR": "/models",
        "MODELPLANE_SERVE_TORCH_THREADS": "4", "MODELPLANE_SERVE_MAX_BATCH_SIZE": "32",
        "MODELPLANE_SERVE_MAX_QUEUE": "64", "MODELPLANE_SERVE_MAX_TOKENS_CAP": "256"}
    assert env["AWS_ENDPOINT_URL"] == "http://minio:9000"
    assert container["envFrom"] == [{"secretRef": {"name": "s3-credentials"}}]


def test_server_env_parses_with_the_servers_own_settings(graph: Graph) -> None:
    container = _deployment(graph)["spec"]["template"]["spec"]["containers"][0]
    # The Secret files exist only in the pod; everything else must parse as rendered.
    env = {e["name"]: e["value"] for e in container["env"] if not e["value"].startswith(SECRETS_DIR)}
    settings = ServeSettings.parse([], env)
    assert (settings.model_uri, settings.served_name, settings.port) == ("s3://models/lm/", "lm", 8080)
    assert (settings.max_batch_size, settings.max_queue, settings.max_tokens_cap) == (32, 64, 256)


def test_secrets_reach_the_server_as_read_only_files(graph: Graph) -> None:
    pod = _deployment(graph)["spec"]["template"]["spec"]
    env = {e["name"]: e["value"] for e in pod["containers"][0]["env"]}
    assert env[env_name("redis_url_file")] == f"{SECRETS_DIR}/{REDIS_URL_FILE}"
    assert env[env_name("api_key_file")] == f"{SECRETS_DIR}/{API_KEY_FILE}"
    assert {"name": "secrets", "mountPath": SECRETS_DIR, "readOnly": True} in pod["containers"][0]["volumeMounts"]
    assert {"name": "secrets", "projected": {"defaultMode": 0o440, "sources": [
        {"secret": {"name": "lm-api-key", "items": [{"key": "api-key", "path": API_KEY_FILE}]}},
        {"secret": {"name": "lm-redis", "items": [{"key": "url", "path": REDIS_URL_FILE}]}},
    ]}} in pod["volumes"]
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
    assert [(r["match"][0]["uri"]["prefix"], r["rewrite"]["uri"]) for r in vs["http"]] == [("/lm/v1/", "/v1/"),
                                                                                          ("/lm/v2/", "/v2/")]
    assert all(r["timeout"] == "60s" and r["retries"]["attempts"] == 2 for r in vs["http"])


def test_canary_weight_splits_traffic_between_subsets() -> None:
    graph = _render(canaryImage="ghcr.io/modelplane/serve:0.2.0", canaryWeight=10)
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


def test_pods_carry_the_labels_the_namespace_servicemonitor_selects(graph: Graph) -> None:
    labels = _deployment(graph)["spec"]["template"]["metadata"]["labels"]
    assert labels == {"app.kubernetes.io/name": "lm", "app.kubernetes.io/component": "inference",
                      "app.kubernetes.io/managed-by": "modelplane", "modelplane.io/track": "stable"}


def test_without_the_observability_stack_the_hpa_scales_on_cpu_only() -> None:
    svc = InferenceServiceConfig.model_validate(SERVICE)
    graph = render_program("test", lambda: InferenceService(
        "lm", svc, image="ghcr.io/modelplane/serve:0.1.0", namespace="inference", service_account="model-server",
        model_uri="s3://models/lm/", allowed_principals=[GATEWAY], queue_depth_autoscaling=False, mesh=False) and None)
    metrics = graph.one("kubernetes:autoscaling/v2:HorizontalPodAutoscaler").inputs["spec"]["metrics"]
    assert [m["type"] for m in metrics] == ["Resource"]
    assert not graph.of_type("kubernetes:networking.istio.io/v1:VirtualService")
    assert not graph.of_type("kubernetes:security.istio.io/v1:AuthorizationPolicy")


def test_cache_and_api_key_off_leave_no_secrets() -> None:
    graph = _render(cache=False, apiKey=False)
    assert not graph.of_type("kubernetes:core/v1:Secret")
    env = {e["name"] for e in _deployment(graph)["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert not {env_name("redis_url_file"), env_name("api_key_file")} & env


def test_tf_serving_runtime_syncs_the_export_and_serves_rest() -> None:
    graph = _render(image="tensorflow/serving:2.20.0", runtime="tf-serving", cpu="2", memory="4Gi", gpus=0,
                    gpuPool=None)
    pod = _deployment(graph)["spec"]["template"]["spec"]
    assert pod["initContainers"][0]["command"][:3] == ["aws", "s3", "sync"]
    assert pod["initContainers"][0]["args"] == ["s3://models/lm/", "/models/lm"]
    assert pod["containers"][0]["readinessProbe"]["httpGet"]["path"] == "/v1/models/lm"
    assert "--rest_api_port=8501" in pod["containers"][0]["args"]
    vs = graph.one("kubernetes:networking.istio.io/v1:VirtualService").inputs["spec"]
    assert (vs["http"][0]["match"][0]["uri"]["prefix"], vs["http"][0]["rewrite"]["uri"]) == ("/lm/v1/models/", "/v1/models/")
    hpa = graph.one("kubernetes:autoscaling/v2:HorizontalPodAutoscaler").inputs["spec"]
    assert [m["type"] for m in hpa["metrics"]] == ["Resource"]
    # TF Serving has no response cache or API key: the service entry's defaults (on) do not apply.
    assert not graph.of_type("kubernetes:core/v1:Secret")
    monitoring = graph.one("kubernetes:core/v1:ConfigMap").inputs
    assert monitoring["metadata"]["name"] == "lm-tf-serving-monitoring"


@pytest.mark.parametrize("kind", ["Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Secret"])
def test_core_kinds_validate_against_the_kubernetes_schema(graph: Graph, kind: str) -> None:
    assert_kind_validates(graph, kind)


def test_no_two_services_of_a_stack_claim_overlapping_ingress_prefixes(stack_graph: Callable[[str], Graph]) -> None:
    # Istio merges every VirtualService bound to host "*" on the gateway in creation order, so an overlap would let
    # one service shadow another's requests.
    graph = stack_graph("dev")
    prefixes = [match["uri"]["prefix"] for vs in graph.of_type("kubernetes:networking.istio.io/v1:VirtualService")
                if vs.inputs["spec"]["gateways"] != ["mesh"]
                for route in vs.inputs["spec"]["http"] for match in route["match"]]
    assert len(prefixes) >= 4
    overlapping = [(a, b) for a in prefixes for b in prefixes if a != b and b.startswith(a)]
    assert not overlapping, overlapping
