"""`InferenceService`: a model server behind Istio with autoscaling, disruption budget and canary routing.

The runtimes' containers are built in infra/k8s/inference_runtimes.py. With `runtime: vllm` or `recommend` there
are two tiers: the caching gateway (our serve image) is the service clients reach through the ingress, and it
calls the runtime's own Service; the canary split happens on that in-mesh hop, so a new runtime image takes its
share of traffic behind the one gateway. A recommendation depends on features that change with every event, so
the gateway of a `recommend` service has no response cache, and the service reads the stack's Redis itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from infra.config.workloads import InferenceServiceConfig
from infra.k8s.inference_netpol import NetworkAccess, service_network_policies
from infra.k8s.inference_runtimes import (
    API_KEY_SECRET_KEY,
    GATED_RUNTIMES,
    GATEWAY_PORT,
    LLM_REQUEST_TIMEOUT_S,
    PORTS,
    REQUEST_TIMEOUT_S,
    containers,
    gateway_container,
)
from infra.k8s.mesh import GATEWAY, principal
from infra.k8s.netpol import Rule
from infra.k8s.observability import PROMETHEUS_PRINCIPAL, VLLM_WAITING_HPA_METRIC, scrape_endpoint
from infra.k8s.podspec import REDIS_URL_SECRET_KEY, manifest_block, pod_security_context, scheduling
from workloads.common.metrics import INFERENCE_QUEUE_DEPTH
from workloads.common.settings import API_KEY_FILE, REDIS_URL_FILE
from workloads.common.vocab import COMPONENT_LABEL, MANAGED_BY_LABELS, NAME_LABEL, TRACK_LABEL

REQUEST_TIMEOUT: Final = f"{REQUEST_TIMEOUT_S}s"
"""Route timeout at the mesh (also each retry's budget)."""
LLM_REQUEST_TIMEOUT: Final = f"{LLM_REQUEST_TIMEOUT_S}s"
"""Route timeout of vLLM services (the gateway's read timeout too)."""
TARGET_CPU_UTILIZATION: Final = 70
"""CPU utilisation % the HPA falls back on."""
GATEWAY_SERVICE_ACCOUNT_SUFFIX: Final = "-gateway"
"""A vLLM or recommend service's gateway runs as ServiceAccount `<name>-gateway`: the only identity the runtime
admits, with no IAM role (it reads no S3), unlike the servers' shared account."""
RUNTIME_COMPONENT: Final = "inference-runtime"
"""COMPONENT_LABEL of a vLLM runtime's Service: its own ServiceMonitor scrapes it, not the namespace-wide one (which
scrapes our own runtimes, recommend's included)."""
_RETRIES: Final = {"attempts": 2, "retryOn": "connect-failure,refused-stream,reset-before-request"}
"""Only failures before a response: retrying a generation that started would double the cost."""


class InferenceService(pulumi.ComponentResource):
    """Deployment(s), Service, HPA, PDB, VirtualService, DestinationRule, AuthorizationPolicy; with runtime vllm or
    recommend, both for the gateway and for the runtime, plus the gateway's ServiceAccount (and vLLM's
    ServiceMonitor).

    The namespace-wide ServiceMonitor of the Observability stack scrapes our servers, gateways and recommendation
    services.
    """

    service_host: str
    """In-cluster DNS name of the Service clients call (the gateway's, with runtime vllm)."""
    api_key_secret: str | None
    """Name of the Secret holding the generated API key (key `api-key`), when one was asked for."""

    def __init__(self, name: str, svc: InferenceServiceConfig, *, image: str, namespace: str, service_account: str,
                 model_uri: pulumi.Input[str], allowed_principals: Sequence[str],
                 env: Mapping[str, str] | None = None, secret_env_from: Sequence[pulumi.Input[str]] = (),
                 redis_url: pulumi.Input[str] | None = None, mesh: bool = True, queue_depth_autoscaling: bool = True,
                 gateway_image: str | None = None, egress_rules: Sequence[Rule] = (),
                 redis_egress: Sequence[Rule] = (), opts: pulumi.ResourceOptions | None = None) -> None:
        """`svc` is the stack's entry; `image` the stable track's runtime image (pinned); `namespace` and
        `service_account` where the runtime runs with its IAM role (a vLLM gateway has an account of its own);
        `model_uri` the S3 prefix of the model; `allowed_principals` the mTLS principals the AuthorizationPolicy of
        the Service clients call admits (ingress gateway, Prometheus);
        `env` plain env for the runtime (the local stack's MinIO endpoint); `secret_env_from` Secrets whose keys
        become env vars (the local stack's MinIO keys only); `redis_url` the stack's Redis, kept in a Secret that
        the pods mount as a file, as the API key (the response cache when `svc.cache`; required by runtime
        recommend, which reads the live features there); `mesh` whether to create the
        Istio routes; `queue_depth_autoscaling` whether the observability stack is there: the HPA can use its
        custom metrics (prometheus-adapter) and ServiceMonitors can be created (the operator's CRD);
        `gateway_image` our serve image, which runs the caching gateway (runtimes vllm and recommend) and checks
        vLLM's export before vLLM starts;
        `egress_rules` the runtime's NetworkPolicy egress to the model store (S3 or MinIO), `redis_egress` to the
        stack's Redis (given to the pods that use it)."""
        ours, vllm, recommend = (svc.runtime == runtime for runtime in ("modelplane-serve", "vllm", "recommend"))
        if recommend and redis_url is None:
            raise ValueError(f"inference service {name!r}: runtime recommend needs redis_url (the live features)")
        super().__init__("modelplane:inference:InferenceService", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.service_host = f"{name}.{namespace}.svc.cluster.local"
        labels = _labels(name)
        gated = svc.runtime in GATED_RUNTIMES
        cache_url = redis_url if (ours or vllm) and svc.cache else None
        self.api_key_secret = self._api_key(name, namespace, labels) if (ours or gated) and svc.api_key else None
        if svc.runtime == "tf-serving":
            # TF Serving exports Prometheus metrics only when a monitoring config enables them.
            k8s.core.v1.ConfigMap(
                f"{name}-monitoring", metadata=_meta(f"{svc.name}-tf-serving-monitoring", namespace, labels),
                data={"monitoring.config": 'prometheus_config { enable: true, path: "/monitoring/prometheus/metrics" }\n'},
                opts=child,
            )
        runtime = f"{name}{GATED_RUNTIMES[svc.runtime]}" if gated else name
        runtime_labels = _labels(runtime)
        # The Redis URL (with its password) of the cache, or of recommend's live features, in a Secret.
        redis_secret = self._redis_secret(name, namespace, labels, redis_url if recommend else cache_url)
        files: dict[str, tuple[pulumi.Input[str], str]] = {}
        if redis_secret is not None and (ours or recommend):
            files[REDIS_URL_FILE] = (redis_secret, REDIS_URL_SECRET_KEY)
        if ours and self.api_key_secret:
            files[API_KEY_FILE] = (self.api_key_secret, API_KEY_SECRET_KEY)
        tracks = {"stable": image}
        if svc.canary_image:
            tracks["canary"] = svc.canary_image
        env_from = [{"secretRef": {"name": secret}} for secret in secret_env_from]
        for track, track_image in tracks.items():
            container, init_containers, volumes = containers(svc, track_image, model_uri, dict(env or {}),
                                                             env_from, files, gateway_image or image)
            self._deployment(runtime, namespace, track, svc.min_replicas, runtime_labels,
                             _pod(service_account, [container], volumes, init_containers),
                             scheduling(svc.gpu_pool, svc.gpus))
        service_labels = {**runtime_labels, COMPONENT_LABEL: RUNTIME_COMPONENT} if vllm else runtime_labels
        self._service(runtime, namespace, service_labels)
        # The recommendation service has no queue: each request is a Redis read and one small product, so CPU is
        # what saturates first and tracks its request rate; it scales on the CPU fallback alone.
        metric = {"modelplane-serve": INFERENCE_QUEUE_DEPTH, "vllm": VLLM_WAITING_HPA_METRIC}.get(svc.runtime)
        self._autoscaling(runtime, namespace, svc, runtime_labels, metric if queue_depth_autoscaling else None)
        if gated:
            runtime_host = f"{runtime}.{namespace}.svc.cluster.local"
            keys = svc.vllm.api_keys_secret or self.api_key_secret
            gateway, gateway_volumes = gateway_container(
                gateway_image or image, f"http://{runtime_host}:80", model_uri, None if recommend else redis_secret,
                keys, LLM_REQUEST_TIMEOUT_S if vllm else REQUEST_TIMEOUT_S, svc.rate_limit())
            gateway_account = self._gateway_account(name, namespace, labels)
            self._deployment(name, namespace, "stable", svc.min_replicas, labels,
                             _pod(gateway_account, [gateway], gateway_volumes, []), {})
            self._service(name, namespace, labels)
            self._autoscaling(name, namespace, svc, labels, None)
            if vllm and queue_depth_autoscaling:
                self._monitor(runtime, namespace, runtime_labels, mesh)
        service_network_policies(self, name, namespace, svc, labels, cached=cache_url is not None, access=NetworkAccess(
            mesh=mesh, scraped=queue_depth_autoscaling, egress_rules=egress_rules, redis_egress=redis_egress))
        if mesh:
            self._mesh(name, namespace, svc, labels, allowed_principals)
            if gated:
                # Only this service's gateway may call the runtime (the API keys and rate limits are there), and
                # Prometheus its /metrics when it scrapes.
                self._runtime_mesh(runtime, namespace, svc, runtime_labels, principal(namespace, gateway_account),
                                   queue_depth_autoscaling)
        self.register_outputs({"service_host": self.service_host})

    def _gateway_account(self, name: str, namespace: str, labels: dict[str, str]) -> str:
        """The gateway's own ServiceAccount: no IAM role, and no API token, as it never calls Kubernetes."""
        account = f"{name}{GATEWAY_SERVICE_ACCOUNT_SUFFIX}"
        k8s.core.v1.ServiceAccount(f"{name}-gateway-sa", metadata=_meta(account, namespace, labels),
                                   automount_service_account_token=False, opts=pulumi.ResourceOptions(parent=self))
        return account

    def _api_key(self, name: str, namespace: str, labels: dict[str, str]) -> str:
        key = random.RandomPassword(f"{name}-api-key", length=48, special=False, opts=pulumi.ResourceOptions(parent=self))
        k8s.core.v1.Secret(f"{name}-api-key", metadata=_meta(f"{name}-api-key", namespace, labels),
                           string_data={API_KEY_SECRET_KEY: key.result}, opts=pulumi.ResourceOptions(parent=self))
        return f"{name}-api-key"

    def _redis_secret(self, name: str, namespace: str, labels: dict[str, str],
                      url: pulumi.Input[str] | None) -> pulumi.Output[str] | None:
        """The Secret `<name>-redis` holding `url` (key REDIS_URL_SECRET_KEY), mounted as a file by the pod that
        reads that Redis; None without a URL."""
        if url is None:
            return None
        secret = k8s.core.v1.Secret(f"{name}-redis", metadata=_meta(f"{name}-redis", namespace, labels),
                                    string_data={REDIS_URL_SECRET_KEY: url}, opts=pulumi.ResourceOptions(parent=self))
        return secret.metadata.name

    def _deployment(self, app: str, namespace: str, track: str, replicas: int, labels: dict[str, str],
                    pod: dict[str, Any], placement: dict[str, Any]) -> None:
        pod_labels = {**labels, TRACK_LABEL: track}
        selector = {NAME_LABEL: app, TRACK_LABEL: track}
        spread = [{"maxSkew": 1, "topologyKey": key, "whenUnsatisfiable": "ScheduleAnyway",
                   "labelSelector": {"matchLabels": selector}}
                  for key in ("topology.kubernetes.io/zone", "kubernetes.io/hostname")]
        deployment_name = app if track == "stable" else f"{app}-{track}"
        k8s.apps.v1.Deployment(f"{app}-{track}", metadata=_meta(deployment_name, namespace, pod_labels), spec=manifest_block({
            "replicas": replicas if track == "stable" else 1,
            "selector": {"matchLabels": selector},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {"labels": pod_labels, "annotations": {
                    # Envoy must hold on until the server has drained in-flight requests.
                    "proxy.istio.io/config": '{"terminationDrainDuration": "25s"}',
                }},
                "spec": {**pod, "topologySpreadConstraints": spread, **placement},
            },
        }), opts=pulumi.ResourceOptions(parent=self, ignore_changes=["spec.replicas"]))

    def _service(self, app: str, namespace: str, labels: dict[str, str]) -> None:
        k8s.core.v1.Service(f"{app}-svc", metadata=_meta(app, namespace, labels), spec=manifest_block({
            "selector": {NAME_LABEL: app},
            # The `http` port name tells Istio the protocol (no sniffing).
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
        }), opts=pulumi.ResourceOptions(parent=self))

    def _autoscaling(self, app: str, namespace: str, svc: InferenceServiceConfig, labels: dict[str, str],
                     metric: str | None) -> None:
        child = pulumi.ResourceOptions(parent=self)
        metrics: list[dict[str, Any]] = [{"type": "Resource", "resource": {
            "name": "cpu", "target": {"type": "Utilization", "averageUtilization": TARGET_CPU_UTILIZATION}}}]
        if metric:
            metrics.insert(0, {"type": "Pods", "pods": {
                "metric": {"name": metric},
                "target": {"type": "AverageValue", "averageValue": str(svc.target_queue_depth)}}})
        k8s.autoscaling.v2.HorizontalPodAutoscaler(f"{app}-hpa", metadata=_meta(app, namespace, labels), spec=manifest_block({
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": app},
            "minReplicas": svc.min_replicas,
            "maxReplicas": svc.max_replicas,
            "metrics": metrics,
            # Scale up fast on queueing, down slowly: model loads make cold pods expensive.
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 300,
                                       "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}]},
                         "scaleUp": {"stabilizationWindowSeconds": 0,
                                     "policies": [{"type": "Percent", "value": 100, "periodSeconds": 30}]}},
        }), opts=child)
        k8s.policy.v1.PodDisruptionBudget(f"{app}-pdb", metadata=_meta(app, namespace, labels), spec=manifest_block({
            "maxUnavailable": 1, "selector": {"matchLabels": {NAME_LABEL: app}},
        }), opts=child)

    def _monitor(self, app: str, namespace: str, labels: dict[str, str], mesh: bool) -> None:
        # vLLM also exports Python, process and HTTP series; only its engine's `vllm:` series are kept.
        endpoint = scrape_endpoint(mesh) | {"metricRelabelings": [
            {"sourceLabels": ["__name__"], "regex": "vllm:.*", "action": "keep"}]}
        k8s.apiextensions.CustomResource(
            f"{app}-monitor", api_version="monitoring.coreos.com/v1", kind="ServiceMonitor",
            metadata=_meta(app, namespace, labels),
            spec={"selector": {"matchLabels": {NAME_LABEL: app, COMPONENT_LABEL: RUNTIME_COMPONENT}},
                  "endpoints": [endpoint]},
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _mesh(self, name: str, namespace: str, svc: InferenceServiceConfig, labels: dict[str, str],
              allowed_principals: Sequence[str]) -> None:
        """Ingress routes to the Service clients call, its DestinationRule and AuthorizationPolicy. With runtime
        vllm or recommend that is the gateway: one track, as the canary split is on the gateway's calls to the
        runtime."""
        child = pulumi.ResourceOptions(parent=self)
        gated = svc.runtime in GATED_RUNTIMES
        timeout = _timeout(svc)
        route = [{"destination": {"host": self.service_host, "port": {"number": 80}}}] if gated \
            else _split(self.service_host, svc)
        # Routes that overlap on a host are a config error (infra/config/routes.py): Istio orders merged routes by
        # creation time, not by prefix length (istio/istio#10464). The route strips the prefix before the service.
        http = [{"name": f"{name}-{r.rewrite.strip('/').replace('/', '-')}",
                 "match": [{"uri": {"prefix": r.prefix}}], "rewrite": {"uri": r.rewrite}, "route": route,
                 "timeout": timeout, "retries": {"attempts": 2, "perTryTimeout": timeout,
                                                 "retryOn": _RETRIES["retryOn"]}}
                for r in svc.ingress_routes()]
        k8s.apiextensions.CustomResource(
            f"{name}-vs", api_version="networking.istio.io/v1", kind="VirtualService",
            metadata=_meta(name, namespace, labels),
            spec={"hosts": [svc.ingress.host], "gateways": [GATEWAY], "http": http}, opts=child,
        )
        self._destination_rule(name, namespace, labels, self.service_host, [] if gated else _subsets(svc))
        self._authorization(name, namespace, labels, allowed_principals, GATEWAY_PORT if gated else PORTS[svc.runtime])

    def _runtime_mesh(self, runtime: str, namespace: str, svc: InferenceServiceConfig, labels: dict[str, str],
                      gateway_principal: str, scraped: bool) -> None:
        """The gateway's calls to the runtime: a mesh route splitting stable and canary, their subsets, and
        the policy admitting `gateway_principal`, and with `scraped` Prometheus on /metrics."""
        host = f"{runtime}.{namespace}.svc.cluster.local"
        timeout = _timeout(svc)
        k8s.apiextensions.CustomResource(
            f"{runtime}-vs", api_version="networking.istio.io/v1", kind="VirtualService",
            metadata=_meta(runtime, namespace, labels),
            spec={"hosts": [host], "gateways": ["mesh"], "http": [{
                "name": runtime, "route": _split(host, svc), "timeout": timeout,
                "retries": {**_RETRIES, "perTryTimeout": timeout}}]},
            opts=pulumi.ResourceOptions(parent=self),
        )
        self._destination_rule(runtime, namespace, labels, host, _subsets(svc))
        port = [str(PORTS[svc.runtime])]
        rules = [{"from": [{"source": {"principals": [gateway_principal]}}], "to": [{"operation": {"ports": port}}]}]
        if scraped:
            rules.append({"from": [{"source": {"principals": [PROMETHEUS_PRINCIPAL]}}],
                          "to": [{"operation": {"ports": port, "methods": ["GET"], "paths": ["/metrics"]}}]})
        self._policy(runtime, namespace, labels, rules)

    def _destination_rule(self, app: str, namespace: str, labels: dict[str, str], host: str,
                          subsets: list[dict[str, Any]]) -> None:
        spec: dict[str, Any] = {"host": host, "subsets": subsets, "trafficPolicy": {
            "tls": {"mode": "ISTIO_MUTUAL"},
            "connectionPool": {"http": {"http1MaxPendingRequests": 1024, "maxRequestsPerConnection": 0}},
            "outlierDetection": {"consecutive5xxErrors": 5, "interval": "10s", "baseEjectionTime": "30s",
                                 "maxEjectionPercent": 50},
        }}
        if not subsets:
            del spec["subsets"]
        k8s.apiextensions.CustomResource(
            f"{app}-dr", api_version="networking.istio.io/v1", kind="DestinationRule",
            metadata=_meta(app, namespace, labels), spec=spec, opts=pulumi.ResourceOptions(parent=self),
        )

    def _authorization(self, app: str, namespace: str, labels: dict[str, str], principals: Sequence[str],
                       port: int) -> None:
        self._policy(app, namespace, labels, [{"from": [{"source": {"principals": sorted(set(principals))}}],
                                               "to": [{"operation": {"ports": [str(port)]}}]}])

    def _policy(self, app: str, namespace: str, labels: dict[str, str], rules: list[dict[str, Any]]) -> None:
        """An ALLOW AuthorizationPolicy on `app`'s pods: only what `rules` match reaches them."""
        k8s.apiextensions.CustomResource(
            f"{app}-authz", api_version="security.istio.io/v1", kind="AuthorizationPolicy",
            metadata=_meta(app, namespace, labels),
            spec={"selector": {"matchLabels": {NAME_LABEL: app}}, "action": "ALLOW", "rules": rules},
            opts=pulumi.ResourceOptions(parent=self),
        )


def _labels(app: str) -> dict[str, str]:
    return {NAME_LABEL: app, COMPONENT_LABEL: "inference", **MANAGED_BY_LABELS}


def _meta(name: str, namespace: str, labels: Mapping[str, str]) -> k8s.meta.v1.ObjectMetaArgsDict:
    return {"name": name, "namespace": namespace, "labels": dict(labels)}


def _pod(service_account: str, containers_: list[dict[str, Any]], volumes: list[dict[str, Any]],
         init_containers: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "serviceAccountName": service_account,
        # No pod here calls the Kubernetes API: no token to steal.
        "automountServiceAccountToken": False,
        "securityContext": pod_security_context(),
        "terminationGracePeriodSeconds": 30,
        "initContainers": init_containers,
        "containers": containers_,
        "volumes": volumes,
    }


def _split(host: str, svc: InferenceServiceConfig) -> list[dict[str, Any]]:
    """Weighted route to the stable and (when configured) canary subsets of `host`."""
    route = [{"destination": {"host": host, "subset": "stable", "port": {"number": 80}},
              "weight": 100 - svc.canary_weight}]
    if svc.canary_image:
        route.append({"destination": {"host": host, "subset": "canary", "port": {"number": 80}},
                      "weight": svc.canary_weight})
    return route


def _subsets(svc: InferenceServiceConfig) -> list[dict[str, Any]]:
    subsets = [{"name": "stable", "labels": {TRACK_LABEL: "stable"}}]
    if svc.canary_image:
        subsets.append({"name": "canary", "labels": {TRACK_LABEL: "canary"}})
    return subsets


def _timeout(svc: InferenceServiceConfig) -> str:
    """The mesh routes' timeout: a vLLM generation may run for minutes."""
    return LLM_REQUEST_TIMEOUT if svc.runtime == "vllm" else REQUEST_TIMEOUT

