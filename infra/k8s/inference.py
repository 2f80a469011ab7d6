"""`InferenceService`: a model server behind Istio with autoscaling, disruption budget and canary routing.

Runtime `modelplane-serve` is our FastAPI server (`python -m workloads.serve`: OpenAI completions
and KServe v2). Runtime `tf-serving` is the official TensorFlow Serving image for the TF
trainer's SavedModel exports, fed by an init container that syncs the export from S3.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from infra import versions
from infra.config.workloads import InferenceServiceConfig
from infra.k8s.mesh import GATEWAY
from infra.k8s.podspec import (
    container_resources,
    container_security_context,
    cpu_threads,
    env_list,
    manifest_block,
    pod_security_context,
    scheduling,
)
from workloads.common.metrics import INFERENCE_QUEUE_DEPTH
from workloads.common.vocab import COMPONENT_LABEL, TRACK_LABEL
from workloads.serve.settings import env_name

_PORTS: Final = {"modelplane-serve": 8080, "tf-serving": 8501}
"""Container HTTP port per runtime."""
HOSTS: Final = ("*",)
"""Hosts the VirtualService answers for."""
REQUEST_TIMEOUT: Final = "60s"
"""Route timeout at the mesh (also each retry's budget)."""
TARGET_CPU_UTILIZATION: Final = 70
"""CPU utilisation % the HPA falls back on."""
API_KEY_VAR: Final = "MODELPLANE_API_KEY"
"""The variable holding the generated API key; the server is told its name through `api_key_env`."""
BATCHING_SETTINGS: Final = ("max_batch_size", "max_queue", "max_tokens_cap")
"""Fields of an `inference.services` entry passed as-is to the server's settings of the same name."""


class InferenceService(pulumi.ComponentResource):
    """Deployment(s), Service, HPA, PDB, VirtualService, DestinationRule, AuthorizationPolicy.

    The namespace-wide ServiceMonitor of the Observability stack scrapes every server.
    """

    service_host: str
    """In-cluster DNS name of the Service."""
    api_key_secret: str | None
    """Name of the Secret holding the generated API key (key `api-key`), when one was asked for."""

    def __init__(self, name: str, svc: InferenceServiceConfig, *, image: str, namespace: str, service_account: str,
                 model_uri: pulumi.Input[str], allowed_principals: Sequence[str],
                 env: Mapping[str, str] | None = None, secret_env_from: Sequence[pulumi.Input[str]] = (),
                 redis_url: pulumi.Input[str] | None = None, mesh: bool = True, queue_depth_autoscaling: bool = True,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        """`svc` is the stack's entry; `image` the stable track's image (pinned); `namespace` and
        `service_account` where it runs with its IAM role; `model_uri` the S3 prefix of the export;
        `allowed_principals` the mTLS principals the AuthorizationPolicy admits (gateway, Prometheus);
        `env` plain env for our server (the local stack's MinIO endpoint); `secret_env_from` Secrets whose keys
        become env vars; `redis_url` the stack's cache (used when `svc.cache`); `mesh` whether to create the
        Istio routes; `queue_depth_autoscaling` whether the HPA can use the queue-depth custom metric
        (prometheus-adapter installed)."""
        super().__init__("modelplane:inference:InferenceService", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.service_host = f"{name}.{namespace}.svc.cluster.local"
        labels = {"app.kubernetes.io/name": name, COMPONENT_LABEL: "inference",
                  "app.kubernetes.io/managed-by": "modelplane"}
        ours = svc.runtime == "modelplane-serve"
        secret_env = self._secrets(name, namespace, labels, redis_url if ours and svc.cache else None,
                                   api_key=ours and svc.api_key)
        if not ours:
            # TF Serving exports Prometheus metrics only when a monitoring config enables them.
            k8s.core.v1.ConfigMap(
                f"{name}-monitoring", metadata=_meta(f"{svc.name}-tf-serving-monitoring", namespace, labels),
                data={"monitoring.config": 'prometheus_config { enable: true, path: "/monitoring/prometheus/metrics" }\n'},
                opts=child,
            )
        tracks = {"stable": image}
        if svc.canary_image:
            tracks["canary"] = svc.canary_image
        env_from = [{"secretRef": {"name": secret}} for secret in secret_env_from]
        for track, track_image in tracks.items():
            container, init_containers, volumes = _containers(svc, track_image, model_uri, dict(env or {}),
                                                              env_from, secret_env)
            self._deployment(name, namespace, track, svc, labels, {
                "serviceAccountName": service_account,
                "securityContext": pod_security_context(),
                "terminationGracePeriodSeconds": 30,
                "initContainers": init_containers,
                "containers": [container],
                "volumes": volumes,
            })
        k8s.core.v1.Service(f"{name}-svc", metadata=_meta(name, namespace, labels), spec=manifest_block({
            "selector": {"app.kubernetes.io/name": name},
            # The `http` port name tells Istio the protocol (no sniffing).
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
        }), opts=child)
        self._autoscaling(name, namespace, svc, labels, queue_depth=ours and queue_depth_autoscaling)
        if mesh:
            self._mesh(name, namespace, svc, labels, allowed_principals)
        self.register_outputs({"service_host": self.service_host})

    def _secrets(self, name: str, namespace: str, labels: dict[str, str], redis_url: pulumi.Input[str] | None, *,
                 api_key: bool) -> list[dict[str, Any]]:
        env: list[dict[str, Any]] = []
        child = pulumi.ResourceOptions(parent=self)
        self.api_key_secret = None
        if redis_url is not None:
            secret = k8s.core.v1.Secret(f"{name}-redis", metadata=_meta(f"{name}-redis", namespace, labels),
                                        string_data={"url": redis_url}, opts=child)
            env.append({"name": env_name("redis_url"),
                        "valueFrom": {"secretKeyRef": {"name": secret.metadata.name, "key": "url"}}})
        if api_key:
            key = random.RandomPassword(f"{name}-api-key", length=48, special=False, opts=child)
            secret = k8s.core.v1.Secret(f"{name}-api-key", metadata=_meta(f"{name}-api-key", namespace, labels),
                                        string_data={"api-key": key.result}, opts=child)
            self.api_key_secret = f"{name}-api-key"
            env.append({"name": API_KEY_VAR,
                        "valueFrom": {"secretKeyRef": {"name": secret.metadata.name, "key": "api-key"}}})
            env.append({"name": env_name("api_key_env"), "value": API_KEY_VAR})
        return env

    def _deployment(self, name: str, namespace: str, track: str, svc: InferenceServiceConfig, labels: dict[str, str],
                    pod: dict[str, Any]) -> None:
        pod_labels = {**labels, TRACK_LABEL: track}
        selector = {"app.kubernetes.io/name": name, TRACK_LABEL: track}
        spread = [{"maxSkew": 1, "topologyKey": key, "whenUnsatisfiable": "ScheduleAnyway",
                   "labelSelector": {"matchLabels": selector}}
                  for key in ("topology.kubernetes.io/zone", "kubernetes.io/hostname")]
        deployment_name = name if track == "stable" else f"{name}-{track}"
        k8s.apps.v1.Deployment(f"{name}-{track}", metadata=_meta(deployment_name, namespace, pod_labels), spec=manifest_block({
            "replicas": svc.min_replicas if track == "stable" else 1,
            "selector": {"matchLabels": selector},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {"labels": pod_labels, "annotations": {
                    # Envoy must hold on until the server has drained in-flight requests.
                    "proxy.istio.io/config": '{"terminationDrainDuration": "25s"}',
                }},
                "spec": {**pod, "topologySpreadConstraints": spread, **scheduling(svc.gpu_pool, svc.gpus)},
            },
        }), opts=pulumi.ResourceOptions(parent=self, ignore_changes=["spec.replicas"]))

    def _autoscaling(self, name: str, namespace: str, svc: InferenceServiceConfig, labels: dict[str, str], *,
                     queue_depth: bool) -> None:
        child = pulumi.ResourceOptions(parent=self)
        metrics: list[dict[str, Any]] = [{"type": "Resource", "resource": {
            "name": "cpu", "target": {"type": "Utilization", "averageUtilization": TARGET_CPU_UTILIZATION}}}]
        if queue_depth:
            metrics.insert(0, {"type": "Pods", "pods": {
                "metric": {"name": INFERENCE_QUEUE_DEPTH},
                "target": {"type": "AverageValue", "averageValue": str(svc.target_queue_depth)}}})
        k8s.autoscaling.v2.HorizontalPodAutoscaler(f"{name}-hpa", metadata=_meta(name, namespace, labels), spec=manifest_block({
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": svc.min_replicas,
            "maxReplicas": svc.max_replicas,
            "metrics": metrics,
            # Scale up fast on queueing, down slowly: model loads make cold pods expensive.
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 300,
                                       "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}]},
                         "scaleUp": {"stabilizationWindowSeconds": 0,
                                     "policies": [{"type": "Percent", "value": 100, "periodSeconds": 30}]}},
        }), opts=child)
        k8s.policy.v1.PodDisruptionBudget(f"{name}-pdb", metadata=_meta(name, namespace, labels), spec=manifest_block({
            "maxUnavailable": 1, "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
        }), opts=child)

    def _mesh(self, name: str, namespace: str, svc: InferenceServiceConfig, labels: dict[str, str],
              allowed_principals: Sequence[str]) -> None:
        child = pulumi.ResourceOptions(parent=self)
        host = self.service_host
        route = [{"destination": {"host": host, "subset": "stable", "port": {"number": 80}},
                  "weight": 100 - svc.canary_weight}]
        if svc.canary_image:
            route.append({"destination": {"host": host, "subset": "canary", "port": {"number": 80}},
                          "weight": svc.canary_weight})
        retries = {"attempts": 2, "perTryTimeout": REQUEST_TIMEOUT,
                   # Only failures before a response: retrying a generation that started would double the cost.
                   "retryOn": "connect-failure,refused-stream,reset-before-request"}
        http = [{"name": f"{name}-{prefix.strip('/')}", "match": [{"uri": {"prefix": prefix}}], "route": route,
                 "timeout": REQUEST_TIMEOUT, "retries": retries} for prefix in _route_prefixes(svc)]
        k8s.apiextensions.CustomResource(
            f"{name}-vs", api_version="networking.istio.io/v1", kind="VirtualService",
            metadata=_meta(name, namespace, labels),
            spec={"hosts": list(HOSTS), "gateways": [GATEWAY], "http": http}, opts=child,
        )
        subsets = [{"name": "stable", "labels": {TRACK_LABEL: "stable"}}]
        if svc.canary_image:
            subsets.append({"name": "canary", "labels": {TRACK_LABEL: "canary"}})
        k8s.apiextensions.CustomResource(
            f"{name}-dr", api_version="networking.istio.io/v1", kind="DestinationRule",
            metadata=_meta(name, namespace, labels),
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
            metadata=_meta(name, namespace, labels),
            spec={"selector": {"matchLabels": {"app.kubernetes.io/name": name}}, "action": "ALLOW",
                  "rules": [{"from": [{"source": {"principals": sorted(allowed_principals)}}],
                             "to": [{"operation": {"ports": [str(_PORTS[svc.runtime])]}}]}]},
            opts=child,
        )


def _meta(name: str, namespace: str, labels: Mapping[str, str]) -> k8s.meta.v1.ObjectMetaArgsDict:
    return {"name": name, "namespace": namespace, "labels": dict(labels)}


def _route_prefixes(svc: InferenceServiceConfig) -> list[str]:
    return ["/v1/", "/v2/"] if svc.runtime == "modelplane-serve" else ["/v1/models/"]


def _containers(svc: InferenceServiceConfig, image: str, model_uri: pulumi.Input[str], env: dict[str, str],
                env_from: list[dict[str, Any]], secret_env: list[dict[str, Any]],
                ) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    port = _PORTS[svc.runtime]
    volumes: list[dict[str, Any]] = [{"name": "tmp", "emptyDir": {}}, {"name": "models", "emptyDir": {}}]
    base = {
        "image": image,
        "envFrom": env_from,
        "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}],
        "resources": container_resources(svc.cpu, svc.memory, svc.gpus),
        "securityContext": container_security_context(),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}, {"name": "models", "mountPath": "/models"}],
    }
    if svc.runtime == "modelplane-serve":
        settings: dict[str, pulumi.Input[str]] = {
            **env,
            env_name("model_uri"): model_uri,
            env_name("model_name"): svc.name,
            env_name("port"): str(port),
            env_name("download_dir"): "/models",
            env_name("torch_threads"): str(cpu_threads(svc.cpu)),
            **{env_name(field): str(getattr(svc, field)) for field in BATCHING_SETTINGS},
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
        "args": [model_uri, f"/models/{svc.name}"],
        "env": env_list({"HOME": "/tmp"}),
        "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"cpu": "1", "memory": "512Mi"}},
        "securityContext": container_security_context(),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}, {"name": "models", "mountPath": "/models"}],
    }
    volumes.append({"name": "monitoring", "configMap": {"name": f"{svc.name}-tf-serving-monitoring"}})
    container = {
        **base,
        "name": "tf-serving",
        "args": [f"--model_name={svc.name}", f"--model_base_path=/models/{svc.name}",
                 f"--rest_api_port={port}", "--monitoring_config_file=/etc/tf-serving/monitoring.config"],
        "volumeMounts": [*base["volumeMounts"], {"name": "monitoring", "mountPath": "/etc/tf-serving"}],
        "readinessProbe": {"httpGet": {"path": f"/v1/models/{svc.name}", "port": "http"}, "periodSeconds": 5},
        "livenessProbe": {"tcpSocket": {"port": "http"}, "periodSeconds": 10},
    }
    return container, [sync], volumes
