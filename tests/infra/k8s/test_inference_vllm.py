"""InferenceService with runtime vllm: the vLLM runtime's Deployment, Service, probes, shm, ServiceMonitor and HPA on
vLLM's waiting requests; the caching gateway in front; routes, canary and schema validity."""

from typing import Any

import pulumi
import pytest

from infra import versions
from infra.config.workloads import InferenceServiceConfig
from infra.k8s.inference import InferenceService
from infra.review.engine import render_program
from infra.review.graph import Graph
from tests.support.graph import assert_kind_validates
from workloads.common.settings import API_KEY_FILE, REDIS_URL_FILE, SECRETS_DIR
from workloads.gateway.settings import GatewaySettings

INGRESS = "cluster.local/ns/istio-ingress/sa/istio-ingressgateway"
PROMETHEUS = "cluster.local/ns/monitoring/sa/prometheus"
SERVICE = {"name": "chat", "runtime": "vllm", "model": "lm-small", "cpu": "8", "memory": "64Gi", "gpus": 4,
           "gpuPool": "infer", "minReplicas": 2, "maxReplicas": 6, "targetQueueDepth": 5,
           "vllm": {"preset": "7b", "maxModelLen": 2048, "dtype": "bfloat16"}}
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
HPA = "kubernetes:autoscaling/v2:HorizontalPodAutoscaler"
VS = "kubernetes:networking.istio.io/v1:VirtualService"
DR = "kubernetes:networking.istio.io/v1:DestinationRule"
AUTHZ = "kubernetes:security.istio.io/v1:AuthorizationPolicy"


SERVE_IMAGE = "ghcr.io/modelplane/serve:0.1.0"


def _render(image: str = versions.VLLM_IMAGE, queue_depth_autoscaling: bool = True,
            s3_env: dict[str, str] | None = None, **overrides: Any) -> Graph:
    svc = InferenceServiceConfig.model_validate({**SERVICE, **overrides})
    return render_program("test", lambda: InferenceService(
        "chat", svc, image=image, gateway_image=SERVE_IMAGE, namespace="inference",
        service_account="model-server", model_uri="s3://models/lm-small/", allowed_principals=[INGRESS, PROMETHEUS],
        redis_url=pulumi.Output.secret("rediss://:t@h:6379/0"), queue_depth_autoscaling=queue_depth_autoscaling,
        env=s3_env, secret_env_from=["minio-keys"] if s3_env else ()) and None)


@pytest.fixture(scope="module")
def graph() -> Graph:
    return _render()


def _pod(graph: Graph, name: str) -> dict[str, Any]:
    return graph.one(DEPLOYMENT, name).inputs["spec"]["template"]["spec"]


def _args(container: dict[str, Any]) -> dict[str, str]:
    """Flag -> value of a `vllm serve` argument list (flags without a value map to "")."""
    args, out = container["args"], {}
    for i, arg in enumerate(args):
        if arg.startswith("--"):
            out[arg] = args[i + 1] if i + 1 < len(args) and not args[i + 1].startswith("--") else ""
    return out


def test_runtime_serves_the_s3_model_with_the_run_ai_streamer(graph: Graph) -> None:
    (container,) = _pod(graph, "chat-vllm-stable")["containers"]
    assert container["image"] == versions.VLLM_IMAGE
    assert container["args"][0] == "s3://models/lm-small/"
    assert _args(container) == {
        "--served-model-name": "chat", "--port": "8000", "--dtype": "bfloat16", "--enable-prefix-caching": "",
        "--load-format": "runai_streamer", "--max-model-len": "2048", "--tensor-parallel-size": "4",
        "--gpu-memory-utilization": "0.9"}


def test_streamed_runtime_first_checks_in_s3_that_the_export_is_complete(graph: Graph) -> None:
    # The streamer reads S3 itself: our serve image checks the manifest and the listed files' sizes, downloads nothing.
    pod = _pod(graph, "chat-vllm-stable")
    (check,) = pod["initContainers"]
    assert (check["name"], check["image"], check["command"], check["args"]) == (
        "verify-model", SERVE_IMAGE, ["python", "-m", "workloads.lm.fetch"],
        ["--model-uri", "s3://models/lm-small/", "--verify-only"])
    assert check["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    assert "models" not in {volume["name"] for volume in pod["volumes"]}
    assert check["securityContext"]["readOnlyRootFilesystem"] is True


def test_runtime_probes_health_with_a_generous_startup_budget(graph: Graph) -> None:
    (container,) = _pod(graph, "chat-vllm-stable")["containers"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/health", "port": "http"}
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] == 30 * 60
    assert _render(vllm={**SERVICE["vllm"], "startupMinutes": 90}).one(DEPLOYMENT, "chat-vllm-stable").inputs[
        "spec"]["template"]["spec"]["containers"][0]["startupProbe"]["failureThreshold"] == 540


def test_runtime_gets_a_memory_backed_dev_shm(graph: Graph) -> None:
    pod = _pod(graph, "chat-vllm-stable")
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["shm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "2Gi"}
    assert {"name": "shm", "mountPath": "/dev/shm"} in pod["containers"][0]["volumeMounts"]
    assert "models" not in volumes  # streamed: no copy on the node


def test_runtime_runs_on_its_gpu_pool_with_every_gpu_it_shards_over(graph: Graph) -> None:
    pod = _pod(graph, "chat-vllm-stable")
    assert pod["nodeSelector"] == {"modelplane.io/pool": "infer"}
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "4"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True
    assert {"name": "HOME", "value": "/tmp"} in pod["containers"][0]["env"]


def test_runtime_service_is_scraped_by_its_own_service_monitor_for_vllm_series(graph: Graph) -> None:
    service = graph.one("kubernetes:core/v1:Service", "chat-vllm-svc").inputs
    assert service["spec"]["selector"] == {"app.kubernetes.io/name": "chat-vllm"}
    monitor = graph.one("kubernetes:monitoring.coreos.com/v1:ServiceMonitor").inputs
    assert monitor["metadata"]["namespace"] == "inference"
    selected = monitor["spec"]["selector"]["matchLabels"]
    assert selected.items() <= service["metadata"]["labels"].items()
    # The namespace-wide monitor selects component=inference: the runtime's Service must not match it too.
    assert service["metadata"]["labels"]["app.kubernetes.io/component"] != "inference"
    (endpoint,) = monitor["spec"]["endpoints"]
    assert (endpoint["port"], endpoint["path"]) == ("http", "/metrics")
    assert endpoint["metricRelabelings"] == [{"sourceLabels": ["__name__"], "regex": "vllm:.*", "action": "keep"}]


def test_runtime_hpa_scales_on_vllm_waiting_requests(graph: Graph) -> None:
    hpa = graph.one(HPA, "chat-vllm-hpa").inputs["spec"]
    assert hpa["scaleTargetRef"]["name"] == "chat-vllm"
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 6)
    assert hpa["metrics"][0]["pods"] == {"metric": {"name": "vllm_num_requests_waiting"},
                                         "target": {"type": "AverageValue", "averageValue": "5"}}


def test_without_the_observability_stack_there_is_no_monitor_and_no_custom_metric() -> None:
    graph = _render(queue_depth_autoscaling=False)
    assert not graph.of_type("kubernetes:monitoring.coreos.com/v1:ServiceMonitor")
    assert [m["type"] for m in graph.one(HPA, "chat-vllm-hpa").inputs["spec"]["metrics"]] == ["Resource"]


def test_gateway_fronts_the_runtime_with_the_cache_and_the_api_keys(graph: Graph) -> None:
    pod = _pod(graph, "chat-stable")
    (container,) = pod["containers"]
    assert container["command"] == ["python", "-m", "workloads.gateway"]
    assert container["image"] == "ghcr.io/modelplane/serve:0.1.0"
    env = {e["name"]: e for e in container["env"]}
    assert env["MODELPLANE_GATEWAY_UPSTREAM"]["value"] == "http://chat-vllm.inference.svc.cluster.local:80"
    assert env["MODELPLANE_GATEWAY_CACHE_VERSION"]["value"] == "s3://models/lm-small/"
    assert env["MODELPLANE_GATEWAY_REDIS_URL_FILE"]["value"] == f"{SECRETS_DIR}/{REDIS_URL_FILE}"
    assert env["MODELPLANE_GATEWAY_API_KEYS_FILE"]["value"] == f"{SECRETS_DIR}/{API_KEY_FILE}"
    assert {"name": "secrets", "projected": {"defaultMode": 0o440, "sources": [
        {"secret": {"name": "chat-api-key", "items": [{"key": "api-key", "path": API_KEY_FILE}]}},
        {"secret": {"name": "chat-redis", "items": [{"key": "url", "path": REDIS_URL_FILE}]}},
    ]}} in pod["volumes"]
    assert {"name": "secrets", "mountPath": SECRETS_DIR, "readOnly": True} in container["volumeMounts"]
    assert "nodeSelector" not in pod and "tolerations" not in pod
    assert graph.one("kubernetes:core/v1:Secret", "chat-api-key").inputs["metadata"]["name"] == "chat-api-key"


def test_gateway_env_is_the_gateways_own_settings() -> None:
    graph = _render(cache=False, apiKey=False)
    (container,) = _pod(graph, "chat-stable")["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    settings = GatewaySettings.parse([], env)
    assert (settings.upstream, settings.port, settings.allow_anonymous) == (
        "http://chat-vllm.inference.svc.cluster.local:80", 8080, True)
    assert not graph.of_type("kubernetes:core/v1:Secret")


def test_a_given_api_keys_secret_replaces_the_generated_one() -> None:
    graph = _render(vllm={**SERVICE["vllm"], "apiKeysSecret": "chat-clients"})
    sources = next(v for v in _pod(graph, "chat-stable")["volumes"] if v["name"] == "secrets")["projected"]["sources"]
    assert {"secret": {"name": "chat-clients", "items": [{"key": "api-key", "path": API_KEY_FILE}]}} in sources


def test_ingress_routes_v1_to_the_gateway_and_the_mesh_splits_the_runtime_canary() -> None:
    graph = _render(canaryImage="vllm/vllm-openai:v0.33.0", canaryWeight=10)
    ingress = graph.one(VS, "chat-vs").inputs["spec"]
    assert ingress["gateways"] == ["istio-ingress/istio-ingressgateway"]
    (route,) = ingress["http"]
    assert (route["match"], route["rewrite"]) == ([{"uri": {"prefix": "/chat/v1/"}}], {"uri": "/v1/"})
    assert route["route"] == [{"destination": {"host": "chat.inference.svc.cluster.local", "port": {"number": 80}}}]
    internal = graph.one(VS, "chat-vllm-vs").inputs["spec"]
    assert (internal["gateways"], internal["hosts"]) == (["mesh"], ["chat-vllm.inference.svc.cluster.local"])
    assert [(r["destination"]["subset"], r["weight"]) for r in internal["http"][0]["route"]] == [("stable", 90),
                                                                                              ("canary", 10)]
    assert [s["name"] for s in graph.one(DR, "chat-vllm-dr").inputs["spec"]["subsets"]] == ["stable", "canary"]
    canary = _pod(graph, "chat-vllm-canary")["containers"][0]
    assert canary["image"] == "vllm/vllm-openai:v0.33.0"
    assert graph.one(DEPLOYMENT, "chat-vllm-canary").inputs["spec"]["replicas"] == 1


def test_gateway_reads_from_vllm_as_long_as_the_mesh_routes_allow() -> None:
    # A non-streamed completion is silent until it is done: the gateway must not cut it before the routes do.
    graph = _render(cache=False, apiKey=False)
    (container,) = _pod(graph, "chat-stable")["containers"]
    settings = GatewaySettings.parse([], {e["name"]: e["value"] for e in container["env"]})
    timeouts = {route["timeout"] for vs in ("chat-vs", "chat-vllm-vs") for route in graph.one(VS, vs).inputs["spec"]["http"]}
    assert timeouts == {f"{settings.read_timeout_s:.0f}s"} == {"600s"}


def test_only_the_gateway_and_prometheus_reach_the_runtime(graph: Graph) -> None:
    runtime = graph.one(AUTHZ, "chat-vllm-authz").inputs["spec"]
    assert runtime["selector"] == {"matchLabels": {"app.kubernetes.io/name": "chat-vllm"}}
    # Not the servers' shared account (other model servers), not the ingress gateway (it reaches our gateway only).
    assert runtime["rules"] == [
        {"from": [{"source": {"principals": ["cluster.local/ns/inference/sa/chat-gateway"]}}],
         "to": [{"operation": {"ports": ["8000"]}}]},
        {"from": [{"source": {"principals": [PROMETHEUS]}}],
         "to": [{"operation": {"ports": ["8000"], "methods": ["GET"], "paths": ["/metrics"]}}]}]
    gateway = graph.one(AUTHZ, "chat-authz").inputs["spec"]
    assert gateway["rules"] == [{"from": [{"source": {"principals": [INGRESS, PROMETHEUS]}}],
                                 "to": [{"operation": {"ports": ["8080"]}}]}]


def test_without_the_observability_stack_only_the_gateway_reaches_the_runtime() -> None:
    graph = _render(queue_depth_autoscaling=False)
    principals = [rule["from"][0]["source"]["principals"]
                  for rule in graph.one(AUTHZ, "chat-vllm-authz").inputs["spec"]["rules"]]
    assert principals == [["cluster.local/ns/inference/sa/chat-gateway"]]


def test_the_gateway_runs_as_its_own_account_without_a_role_or_a_token(graph: Graph) -> None:
    assert _pod(graph, "chat-stable")["serviceAccountName"] == "chat-gateway"
    assert _pod(graph, "chat-vllm-stable")["serviceAccountName"] == "model-server"
    (account,) = graph.of_type("kubernetes:core/v1:ServiceAccount")
    assert account.inputs["metadata"]["name"] == "chat-gateway"
    assert account.inputs["metadata"]["namespace"] == "inference"
    # No IRSA annotation and no EKS Pod Identity association: the gateway cannot read the models bucket.
    assert "annotations" not in account.inputs["metadata"]
    assert not [r for r in graph.resources if r.type.startswith("aws:")]
    assert account.inputs["automountServiceAccountToken"] is False


def test_both_tiers_keep_a_pdb(graph: Graph) -> None:
    budgets = {r.name: r.inputs["spec"] for r in graph.of_type("kubernetes:policy/v1:PodDisruptionBudget")}
    assert budgets == {
        "chat-pdb": {"maxUnavailable": 1, "selector": {"matchLabels": {"app.kubernetes.io/name": "chat"}}},
        "chat-vllm-pdb": {"maxUnavailable": 1, "selector": {"matchLabels": {"app.kubernetes.io/name": "chat-vllm"}}}}


def test_without_gpus_the_cpu_runtime_syncs_the_model_and_sizes_its_kv_cache() -> None:
    graph = _render(image=versions.VLLM_CPU_IMAGE, gpus=0, gpuPool=None, cpu="2", memory="8Gi",
                    vllm={"preset": "mini", "maxModelLen": 512})
    pod = _pod(graph, "chat-vllm-stable")
    (fetch,) = pod["initContainers"]
    # Our serve image downloads the files the manifest lists and verifies them, as our own server's loader does.
    assert (fetch["name"], fetch["image"], fetch["command"], fetch["args"]) == (
        "fetch-model", SERVE_IMAGE, ["python", "-m", "workloads.lm.fetch"],
        ["--model-uri", "s3://models/lm-small/", "--target", "/models/chat"])
    assert {"name": "models", "mountPath": "/models"} in fetch["volumeMounts"]
    (container,) = pod["containers"]
    assert container["args"][0] == "/models/chat"
    flags = _args(container)
    assert "--load-format" not in flags and "--tensor-parallel-size" not in flags
    assert {"name": "VLLM_CPU_KVCACHE_SPACE", "value": "2"} in container["env"]
    assert "nodeSelector" not in pod


@pytest.mark.parametrize("gpus", [4, 0])
def test_the_model_check_reads_s3_with_the_pods_s3_env(gpus: int) -> None:
    cpu: dict[str, Any] = {} if gpus else {"image": versions.VLLM_CPU_IMAGE, "gpuPool": None, "cpu": "2", "memory": "8Gi",
                           "vllm": {"preset": "mini"}}
    graph = _render(gpus=gpus, s3_env={"AWS_ENDPOINT_URL": "http://minio.minio:9000"}, **cpu)
    (init,) = _pod(graph, "chat-vllm-stable")["initContainers"]
    assert {"name": "AWS_ENDPOINT_URL", "value": "http://minio.minio:9000"} in init["env"]
    assert init["envFrom"] == [{"secretRef": {"name": "minio-keys"}}]


def test_the_smallest_cpu_memory_the_config_admits_gets_the_minimum_kv_cache() -> None:
    # tests/infra/config/test_vllm.py: 6Gi is the least a CPU `mini` service may have; a quarter of it is 1 GiB.
    graph = _render(image=versions.VLLM_CPU_IMAGE, gpus=0, gpuPool=None, cpu="2", memory="6Gi",
                    vllm={"preset": "mini"})
    (container,) = _pod(graph, "chat-vllm-stable")["containers"]
    assert {"name": "VLLM_CPU_KVCACHE_SPACE", "value": "1"} in container["env"]
    assert container["resources"]["limits"]["memory"] == "6Gi"


@pytest.mark.parametrize("kind", ["Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Secret",
                                  "ServiceAccount"])
def test_core_kinds_validate_against_the_kubernetes_schema(graph: Graph, kind: str) -> None:
    assert_kind_validates(graph, kind)
