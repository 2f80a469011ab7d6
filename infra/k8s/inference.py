"""`InferenceService`: a model server behind Istio with autoscaling, disruption budget and canary routing.

Runtime `modelplane-serve` is our FastAPI server (`python -m workloads.serve`: OpenAI completions
and KServe v2). Runtime `tf-serving` is the official TensorFlow Serving image for the TF
trainer's SavedModel exports, fed by an init container that syncs the export from S3.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from infra import versions
from infra.config.errors import raise_if_invalid
from infra.k8s.podspec import (
    Resources,
    container_security_context,
    cpu_threads,
    env_list,
    image_is_pinned,
    pod_security_context,
    scheduling,
)

Runtime = Literal["modelplane-serve", "tf-serving"]
QUEUE_DEPTH_METRIC: Final = "modelplane_inference_queue_depth"
"""Per-pod custom metric (served by prometheus-adapter) the HPA scales on."""
_PORTS: Final = {"modelplane-serve": 8080, "tf-serving": 8501}
"""Container HTTP port per runtime."""


@dataclass(frozen=True, kw_only=True)
class InferenceServiceArgs:
    """Inputs of `InferenceService`."""

    runtime: Runtime = "modelplane-serve"
    """modelplane-serve (ours) or tf-serving (official TF Serving image). Defaults to modelplane-serve."""
    namespace: str
    """Namespace of the service (Istio injection on)."""
    image: str
    """Server image, pinned by tag or digest."""
    model_name: str
    """Name clients use (`model` field, /v2/models/NAME, /v1/models/NAME)."""
    model_uri: pulumi.Input[str]
    """S3 prefix of the model export (read through the service account's role)."""
    service_account: str
    """Service account bound to the server's IAM role (read on the models prefix)."""
    resources: Resources
    """Per-pod CPU, memory and GPUs."""
    gpu_pool: str | None = None
    """GPU pool, required when resources.gpus > 0."""
    min_replicas: int = 2
    """HPA floor. Defaults to 2."""
    max_replicas: int = 10
    """HPA ceiling. Defaults to 10."""
    target_queue_depth: int = 8
    """Average queued requests per pod the HPA aims for. Defaults to 8."""
    target_cpu_utilization: int = 70
    """CPU utilisation % the HPA falls back on. Defaults to 70."""
    canary_image: str | None = None
    """A second image served to canary_weight % of traffic. Defaults to none."""
    canary_weight: int = 0
    """Percent of traffic for the canary. Defaults to 0. Valid: 0 to 100."""
    server_env: Mapping[str, str] = field(default_factory=dict)
    """Extra MODELPLANE_SERVE_* settings (batch size, queue, caps)."""
    redis_url: pulumi.Input[str] | None = None
    """Response-cache URL including its AUTH token; kept in a Secret. Defaults to no cache."""
    api_key: bool = False
    """Generate an API key (kept in a Secret) and require it. Defaults to false."""
    gateway: str = "istio-ingress/istio-ingressgateway"
    """Istio Gateway (namespace/name) routing to this service."""
    hosts: Sequence[str] = ("*",)
    """Hosts the VirtualService answers for."""
    allowed_principals: Sequence[str] = ()
    """mTLS principals admitted by the AuthorizationPolicy (gateway, Prometheus)."""
    request_timeout: str = "60s"
    """Route timeout at the mesh. Defaults to 60s."""
    secret_env_from: Sequence[pulumi.Input[str]] = ()
    """Secrets whose keys become env vars (e.g. MinIO credentials on the local stack). Defaults to none."""
    mesh: bool = True
    """Create the Istio VirtualService, DestinationRule and AuthorizationPolicy. Defaults to true."""
    monitoring: bool = True
    """Create a ServiceMonitor (Prometheus operator CRDs). Defaults to true."""
    queue_depth_autoscaling: bool = True
    """Scale on the queue-depth custom metric (needs prometheus-adapter); CPU only otherwise. Defaults to true."""


class InferenceService(pulumi.ComponentResource):
    """Deployment(s), Service, HPA, PDB, ServiceMonitor, VirtualService, DestinationRule, AuthorizationPolicy."""

    service_host: str
    """In-cluster DNS name of the Service."""
    api_key_secret: str | None
    """Name of the Secret holding the generated API key (key `api-key`), when one was asked for."""

    def __init__(self, name: str, args: InferenceServiceArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("modelplane:inference:InferenceService", name, None, opts)
        _validate(args)
        child = pulumi.ResourceOptions(parent=self)
        self.service_host = f"{name}.{args.namespace}.svc.cluster.local"
        labels = {"app.kubernetes.io/name": name, "app.kubernetes.io/component": "inference",
                  "app.kubernetes.io/managed-by": "modelplane"}
        secret_env = self._secrets(name, args, labels)
        if args.runtime == "tf-serving":
            # TF Serving exports Prometheus metrics only when a monitoring config enables them.
            k8s.core.v1.ConfigMap(
                f"{name}-monitoring", metadata=_meta(f"{args.model_name}-tf-serving-monitoring", args.namespace, labels),
                data={"monitoring.config": 'prometheus_config { enable: true, path: "/monitoring/prometheus/metrics" }\n'},
                opts=child,
            )
        tracks = {"stable": args.image}
        if args.canary_image:
            tracks["canary"] = args.canary_image
        for track, image in tracks.items():
            self._deployment(name, track, image, args, labels, secret_env)
        port = _PORTS[args.runtime]
        k8s.core.v1.Service(f"{name}-svc", metadata=_meta(name, args.namespace, labels), spec={
            "selector": {"app.kubernetes.io/name": name},
            # The `http` port name tells Istio the protocol (no sniffing).
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
        }, opts=child)
        self._autoscaling(name, args, labels)
        if args.mesh:
            self._mesh(name, args, labels, port)
        if args.monitoring:
            k8s.apiextensions.CustomResource(
                f"{name}-servicemonitor", api_version="monitoring.coreos.com/v1", kind="ServiceMonitor",
                metadata=_meta(name, args.namespace, labels),
                spec={"selector": {"matchLabels": {"app.kubernetes.io/name": name}},
                      "endpoints": [{"port": "http", "path": _metrics_path(args.runtime), "interval": "15s"}]},
                opts=child,
            )
        self.register_outputs({"service_host": self.service_host})

    def _secrets(self, name: str, args: InferenceServiceArgs, labels: dict[str, str]) -> list[dict[str, Any]]:
        env: list[dict[str, Any]] = []
        child = pulumi.ResourceOptions(parent=self)
        self.api_key_secret = None
        if args.redis_url is not None:
            secret = k8s.core.v1.Secret(f"{name}-redis", metadata=_meta(f"{name}-redis", args.namespace, labels),
                                        string_data={"url": args.redis_url}, opts=child)
            env.append({"name": "MODELPLANE_SERVE_REDIS_URL",
                        "valueFrom": {"secretKeyRef": {"name": secret.metadata.name, "key": "url"}}})
        if args.api_key:
            key = random.RandomPassword(f"{name}-api-key", length=48, special=False, opts=child)
            secret = k8s.core.v1.Secret(f"{name}-api-key", metadata=_meta(f"{name}-api-key", args.namespace, labels),
                                        string_data={"api-key": key.result}, opts=child)
            self.api_key_secret = f"{name}-api-key"
            env.append({"name": "MODELPLANE_API_KEY",
                        "valueFrom": {"secretKeyRef": {"name": secret.metadata.name, "key": "api-key"}}})
            env.append({"name": "MODELPLANE_SERVE_API_KEY_ENV", "value": "MODELPLANE_API_KEY"})
        return env

    def _deployment(self, name: str, track: str, image: str, args: InferenceServiceArgs, labels: dict[str, str],
                    secret_env: list[dict[str, Any]]) -> None:
        pod_labels = {**labels, "modelplane.io/track": track}
        selector = {"app.kubernetes.io/name": name, "modelplane.io/track": track}
        replicas = args.min_replicas if track == "stable" else 1
        container, init_containers, volumes = _containers(args, image, secret_env)
        spread = [{"maxSkew": 1, "topologyKey": key, "whenUnsatisfiable": "ScheduleAnyway",
                   "labelSelector": {"matchLabels": selector}}
                  for key in ("topology.kubernetes.io/zone", "kubernetes.io/hostname")]
        deployment_name = name if track == "stable" else f"{name}-{track}"
        k8s.apps.v1.Deployment(f"{name}-{track}", metadata=_meta(deployment_name, args.namespace, pod_labels), spec={
            "replicas": replicas,
            "selector": {"matchLabels": selector},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {"labels": pod_labels, "annotations": {
                    # Envoy must hold on until the server has drained in-flight requests.
                    "proxy.istio.io/config": '{"terminationDrainDuration": "25s"}',
                }},
                "spec": {
                    "serviceAccountName": args.service_account,
                    "securityContext": pod_security_context(),
                    "terminationGracePeriodSeconds": 30,
                    "initContainers": init_containers,
                    "containers": [container],
                    "volumes": volumes,
                    "topologySpreadConstraints": spread,
                    **scheduling(args.gpu_pool, args.resources.gpus),
                },
            },
        }, opts=pulumi.ResourceOptions(parent=self, ignore_changes=["spec.replicas"]))

    def _autoscaling(self, name: str, args: InferenceServiceArgs, labels: dict[str, str]) -> None:
        child = pulumi.ResourceOptions(parent=self)
        metrics: list[dict[str, Any]] = [{"type": "Resource", "resource": {
            "name": "cpu", "target": {"type": "Utilization", "averageUtilization": args.target_cpu_utilization}}}]
        if args.runtime == "modelplane-serve" and args.queue_depth_autoscaling:
            metrics.insert(0, {"type": "Pods", "pods": {
                "metric": {"name": QUEUE_DEPTH_METRIC},
                "target": {"type": "AverageValue", "averageValue": str(args.target_queue_depth)}}})
        k8s.autoscaling.v2.HorizontalPodAutoscaler(f"{name}-hpa", metadata=_meta(name, args.namespace, labels), spec={
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": args.min_replicas,
            "maxReplicas": args.max_replicas,
            "metrics": metrics,
            # Scale up fast on queueing, down slowly: model loads make cold pods expensive.
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 300,
                                       "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}]},
                         "scaleUp": {"stabilizationWindowSeconds": 0,
                                     "policies": [{"type": "Percent", "value": 100, "periodSeconds": 30}]}},
        }, opts=child)
        k8s.policy.v1.PodDisruptionBudget(f"{name}-pdb", metadata=_meta(name, args.namespace, labels), spec={
            "maxUnavailable": 1, "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
        }, opts=child)

    def _mesh(self, name: str, args: InferenceServiceArgs, labels: dict[str, str], port: int) -> None:
        child = pulumi.ResourceOptions(parent=self)
        host = self.service_host
        stable_weight = 100 - args.canary_weight
        route = [{"destination": {"host": host, "subset": "stable", "port": {"number": 80}}, "weight": stable_weight}]
        if args.canary_image:
            route.append({"destination": {"host": host, "subset": "canary", "port": {"number": 80}},
                          "weight": args.canary_weight})
        retries = {"attempts": 2, "perTryTimeout": args.request_timeout,
                   # Only failures before a response: retrying a generation that started would double the cost.
                   "retryOn": "connect-failure,refused-stream,reset-before-request"}
        http = [{"name": f"{name}-{prefix.strip('/')}", "match": [{"uri": {"prefix": prefix}}], "route": route,
                 "timeout": args.request_timeout, "retries": retries} for prefix in _route_prefixes(args.runtime)]
        k8s.apiextensions.CustomResource(
            f"{name}-vs", api_version="networking.istio.io/v1", kind="VirtualService",
            metadata=_meta(name, args.namespace, labels),
            spec={"hosts": list(args.hosts), "gateways": [args.gateway], "http": http}, opts=child,
        )
        subsets = [{"name": "stable", "labels": {"modelplane.io/track": "stable"}}]
        if args.canary_image:
            subsets.append({"name": "canary", "labels": {"modelplane.io/track": "canary"}})
        k8s.apiextensions.CustomResource(
            f"{name}-dr", api_version="networking.istio.io/v1", kind="DestinationRule",
            metadata=_meta(name, args.namespace, labels),
            spec={"host": host, "subsets": subsets, "trafficPolicy": {
                "tls": {"mode": "ISTIO_MUTUAL"},
                "connectionPool": {"http": {"http1MaxPendingRequests": 1024, "maxRequestsPerConnection": 0}},
                "outlierDetection": {"consecutive5xxErrors": 5, "interval": "10s", "baseEjectionTime": "30s",
                                     "maxEjectionPercent": 50},
            }},
            opts=child,
        )
        k8s.apiextensions.CustomResource(
            f"{name}-authz", api_version="security.istio.io/v1", kind="AuthorizationPolicy",
            metadata=_meta(name, args.namespace, labels),
            spec={"selector": {"matchLabels": {"app.kubernetes.io/name": name}}, "action": "ALLOW",
                  "rules": [{"from": [{"source": {"principals": sorted(args.allowed_principals)}}],
                             "to": [{"operation": {"ports": [str(port)]}}]}]},
            opts=child,
        )


def _meta(name: str, namespace: str, labels: Mapping[str, str]) -> k8s.meta.v1.ObjectMetaArgsDict:
    return {"name": name, "namespace": namespace, "labels": dict(labels)}


def _route_prefixes(runtime: Runtime) -> list[str]:
    return ["/v1/", "/v2/"] if runtime == "modelplane-serve" else ["/v1/models/"]


def _metrics_path(runtime: Runtime) -> str:
    # TF Serving exposes Prometheus metrics only at the path given by its monitoring config.
    return "/metrics" if runtime == "modelplane-serve" else "/monitoring/prometheus/metrics"


def _containers(args: InferenceServiceArgs, image: str,
                secret_env: list[dict[str, Any]]) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    port = _PORTS[args.runtime]
    volumes: list[dict[str, Any]] = [{"name": "tmp", "emptyDir": {}}, {"name": "models", "emptyDir": {}}]
    base = {
        "image": image,
        "envFrom": [{"secretRef": {"name": secret}} for secret in args.secret_env_from],
        "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}],
        "resources": args.resources.manifest(),
        "securityContext": container_security_context(),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}, {"name": "models", "mountPath": "/models"}],
    }
    if args.runtime == "modelplane-serve":
        settings = {
            "MODELPLANE_SERVE_MODEL_URI": args.model_uri,
            "MODELPLANE_SERVE_MODEL_NAME": args.model_name,
            "MODELPLANE_SERVE_PORT": str(port),
            "MODELPLANE_SERVE_DOWNLOAD_DIR": "/models",
            "MODELPLANE_SERVE_TORCH_THREADS": str(cpu_threads(args.resources.cpu)),
            **args.server_env,
        }
        container = {
            **base,
            "name": "server",
            "command": ["python", "-m", "workloads.serve"],
            "env": [*env_list(settings), *secret_env],
            # Loading + warm-up can take minutes for big models: startup allows 10, then readiness takes over.
            "startupProbe": {"httpGet": {"path": "/v2/health/ready", "port": "http"}, "periodSeconds": 10,
                             "failureThreshold": 60},
            "readinessProbe": {"httpGet": {"path": "/v2/health/ready", "port": "http"}, "periodSeconds": 5,
                               "failureThreshold": 2},
            "livenessProbe": {"httpGet": {"path": "/v2/health/live", "port": "http"}, "periodSeconds": 10,
                              "failureThreshold": 3},
        }
        return container, [], volumes
    sync = {
        "name": "fetch-model",
        "image": versions.AWS_CLI_IMAGE,
        "command": ["aws", "s3", "sync", "--only-show-errors"],
        "args": [args.model_uri, f"/models/{args.model_name}"],
        "env": env_list({"HOME": "/tmp"}),
        "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"cpu": "1", "memory": "512Mi"}},
        "securityContext": container_security_context(),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}, {"name": "models", "mountPath": "/models"}],
    }
    volumes.append({"name": "monitoring", "configMap": {"name": f"{args.model_name}-tf-serving-monitoring"}})
    container = {
        **base,
        "name": "tf-serving",
        "args": [f"--model_name={args.model_name}", f"--model_base_path=/models/{args.model_name}",
                 f"--rest_api_port={port}", "--monitoring_config_file=/etc/tf-serving/monitoring.config"],
        "volumeMounts": [*base["volumeMounts"], {"name": "monitoring", "mountPath": "/etc/tf-serving"}],
        "readinessProbe": {"httpGet": {"path": f"/v1/models/{args.model_name}", "port": "http"}, "periodSeconds": 5},
        "livenessProbe": {"tcpSocket": {"port": "http"}, "periodSeconds": 10},
    }
    return container, [sync], volumes


def _validate(args: InferenceServiceArgs) -> None:
    problems = []
    if not 1 <= args.min_replicas <= args.max_replicas:
        problems.append(("min_replicas", f"must be >= 1 and <= max_replicas (got {args.min_replicas}..{args.max_replicas})"))
    if not 0 <= args.canary_weight <= 100:
        problems.append(("canary_weight", f"must be 0 to 100 (got {args.canary_weight})"))
    if args.canary_weight and not args.canary_image:
        problems.append(("canary_image", f"is required when canary_weight > 0 (got weight {args.canary_weight})"))
    if args.resources.gpus and not args.gpu_pool:
        problems.append(("gpu_pool", "is required when resources.gpus > 0"))
    for field_name in ("image", "canary_image"):
        image = getattr(args, field_name)
        if image is not None and not image_is_pinned(image):
            problems.append((field_name, f"must be pinned to a tag or digest, never latest (got {image!r})"))
    if args.mesh and not args.allowed_principals:
        problems.append(("allowed_principals", "must admit at least the ingress gateway's principal"))
    raise_if_invalid("InferenceService", problems)
