"""`StreamProcessor`: the recommendation stream processor (workloads.recommend.processor) as a platform workload.

A Deployment of consumer-group members, scaled by an HPA on the group's consumer lag: the processor exports
`modelplane_recommend_consumer_lag_messages` per partition it owns, and prometheus-adapter serves its sum over the
topic on external.metrics.k8s.io (infra/k8s/observability.py), so the HPA's `AverageValue` target is lag per
replica whichever replica owns which partition. Offsets are committed only after the feature writes, and SIGTERM
finishes the batch and commits (see the processor), so the grace period and the mesh sidecar's drain outlast that.
The configured alert thresholds (freshness budget, lag) reach the rules of infra/k8s/rules/recommend.yaml as
recording rules this component creates: the rule file stays data, the thresholds stay config.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Final

import pulumi
import pulumi_kubernetes as k8s

from infra.config.recommend import RecommendConfig
from infra.k8s.inference import TARGET_CPU_UTILIZATION
from infra.k8s.mesh import sidecar_egress
from infra.k8s.namespaces import INFERENCE_NAMESPACE
from infra.k8s.netpol import Rule, allow_spec, network_policy, select
from infra.k8s.observability import PROMETHEUS_PRINCIPAL, from_prometheus, scrape_endpoint
from infra.k8s.podspec import (
    REDIS_URL_SECRET_KEY,
    SecretFiles,
    container_resources,
    container_security_context,
    manifest_block,
    pod_security_context,
    secret_files,
    secret_path,
)
from workloads.common import metrics
from workloads.common.settings import REDIS_URL_FILE
from workloads.common.vocab import COMPONENT_LABEL, MANAGED_BY_LABELS, NAME_LABEL
from workloads.recommend.settings import ProcessorSettings

NAMESPACE: Final = INFERENCE_NAMESPACE
"""Namespace of the processor (next to the recommendation service that reads its features)."""
SERVICE_ACCOUNT: Final = "recommend-processor"
"""The processor's ServiceAccount: bound to its IAM role (MSK consume) on aws, its mTLS identity in the mesh."""
COMPONENT: Final = "recommend-processor"
"""COMPONENT_LABEL of the processor's objects (the namespace-wide serving ServiceMonitor selects `inference`)."""
MODULE: Final = "workloads.recommend.processor"
"""The processor's entry point (`python -m`)."""
METRICS_PORT: Final = int(ProcessorSettings.model_fields["metrics_port"].default)
"""Port of the processor's /metrics (its settings' default, also set explicitly in the pod's env)."""
TERMINATION_GRACE_S: Final = 60
"""Seconds a stopping replica has to finish its batch, flush dead letters (the processor waits up to 30 s) and
commit its offsets before the kubelet kills it."""


class StreamProcessor(pulumi.ComponentResource):
    """ServiceAccount, Deployment, HPA on consumer lag, PDB, NetworkPolicy, and with `monitoring` a metrics Service,
    ServiceMonitor and the alert thresholds; with `mesh` an Istio AuthorizationPolicy."""

    deployment_name: str
    """Name of the processor's Deployment (also of its HPA, PDB and policies)."""

    def __init__(self, name: str, config: RecommendConfig, *, image: str, bootstrap_servers: pulumi.Input[str],
                 redis_url: pulumi.Input[str], kafka_egress: Sequence[Rule], redis_egress: Sequence[Rule],
                 kafka_settings: Mapping[str, pulumi.Input[str]] | None = None,
                 mesh: bool = True, monitoring: bool = True, opts: pulumi.ResourceOptions | None = None) -> None:
        """`config` is the stack's `recommend` section; `image` the processor image (pinned); `bootstrap_servers`
        the brokers and `kafka_egress` the NetworkPolicy egress to them (with the EKS Pod Identity agent on MSK);
        `redis_url` the feature store (with its password: kept in a Secret) and `redis_egress` the egress to it;
        `kafka_settings` further processor settings by field name (the client's auth on MSK); `mesh` adds the Istio policy;
        `monitoring` the scrape target and thresholds, which need the observability stack's CRDs and adapter."""
        super().__init__("modelplane:recommend:StreamProcessor", name, None, opts)
        unknown = sorted(set(kafka_settings or {}) - set(ProcessorSettings.model_fields))
        if unknown:
            raise pulumi.InputPropertiesError("invalid StreamProcessor args", [pulumi.InputPropertyErrorDetails(
                property_path="kafka_settings", reason=f"{unknown} are not ProcessorSettings fields "
                                                       f"(known: {sorted(ProcessorSettings.model_fields)})")])
        self.deployment_name = SERVICE_ACCOUNT
        labels = {NAME_LABEL: SERVICE_ACCOUNT, COMPONENT_LABEL: COMPONENT, **MANAGED_BY_LABELS}
        child = pulumi.ResourceOptions(parent=self)
        k8s.core.v1.ServiceAccount(f"{name}-sa", metadata=_meta(SERVICE_ACCOUNT, labels),
                                   # It never calls the Kubernetes API; Pod Identity injects AWS credentials itself.
                                   automount_service_account_token=False, opts=child)
        secret = k8s.core.v1.Secret(f"{name}-redis", metadata=_meta(f"{SERVICE_ACCOUNT}-redis", labels),
                                    string_data={REDIS_URL_SECRET_KEY: redis_url}, opts=child)
        settings: dict[str, pulumi.Input[str]] = {
            "bootstrap_servers": bootstrap_servers, "topic": config.topic, "group_id": config.group_id,
            "metrics_port": str(METRICS_PORT), **(kafka_settings or {}),
            # The URL with its password is read from the Secret mounted as a file, never from the env.
            "redis_url_file": secret_path(REDIS_URL_FILE),
        }
        if config.dead_letter_topic:
            settings["dead_letter_topic"] = config.dead_letter_topic
        env: list[dict[str, Any]] = [{"name": ProcessorSettings.env_name(key), "value": value}
                                     for key, value in sorted(settings.items())]
        self._deployment(name, config, image, env, labels, {REDIS_URL_FILE: (secret.metadata.name, REDIS_URL_SECRET_KEY)})
        self._autoscaling(name, config, labels, monitoring)
        self._network_policy(name, labels, kafka_egress, redis_egress, mesh, monitoring)
        if mesh:
            self._authorization(name, labels, monitoring)
        if monitoring:
            self._monitoring(name, config, labels, mesh)
        self.register_outputs({"deployment_name": self.deployment_name})

    def _deployment(self, name: str, config: RecommendConfig, image: str, env: list[dict[str, Any]],
                    labels: dict[str, str], files: SecretFiles) -> None:
        selector = {NAME_LABEL: SERVICE_ACCOUNT}
        volumes, mounts = secret_files(files)
        container = {
            "name": "processor", "image": image, "command": ["python", "-m", MODULE], "env": env,
            "ports": [{"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"}],
            # /metrics answers while the process runs; a consumer has no traffic to be made ready for.
            "livenessProbe": {"httpGet": {"path": "/metrics", "port": "metrics"}, "periodSeconds": 20,
                              "failureThreshold": 3},
            "resources": container_resources(config.cpu, config.memory, 0),
            "securityContext": container_security_context(),
            "volumeMounts": mounts,
        }
        spread = [{"maxSkew": 1, "topologyKey": key, "whenUnsatisfiable": "ScheduleAnyway",
                   "labelSelector": {"matchLabels": selector}}
                  for key in ("topology.kubernetes.io/zone", "kubernetes.io/hostname")]
        k8s.apps.v1.Deployment(f"{name}-deployment", metadata=_meta(SERVICE_ACCOUNT, labels), spec=manifest_block({
            "replicas": config.min_replicas,
            "selector": {"matchLabels": selector},
            # One new member at a time: each join or leave rebalances the group.
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {"labels": labels, "annotations": {
                    # The sidecar must carry the last commit: it drains for up to the grace period, and exits as
                    # soon as the processor has closed its connections (EXIT_ON_ZERO_ACTIVE_CONNECTIONS, istio/istio
                    # pkg/model/proxy.go NodeMetadata) instead of always waiting that long.
                    "proxy.istio.io/config": json.dumps({
                        "terminationDrainDuration": f"{TERMINATION_GRACE_S - 5}s",
                        "proxyMetadata": {"EXIT_ON_ZERO_ACTIVE_CONNECTIONS": "true"}}, sort_keys=True),
                }},
                "spec": {
                    "serviceAccountName": SERVICE_ACCOUNT,
                    "automountServiceAccountToken": False,
                    "securityContext": pod_security_context(),
                    "terminationGracePeriodSeconds": TERMINATION_GRACE_S,
                    "containers": [container],
                    "volumes": volumes,
                    "topologySpreadConstraints": spread,
                },
            },
        }), opts=pulumi.ResourceOptions(parent=self, ignore_changes=["spec.replicas"]))

    def _autoscaling(self, name: str, config: RecommendConfig, labels: dict[str, str], on_lag: bool) -> None:
        """The HPA: on the topic's summed lag per replica (external metric, with `on_lag`), else on CPU."""
        metric: dict[str, Any] = {"type": "Resource", "resource": {
            "name": "cpu", "target": {"type": "Utilization", "averageUtilization": TARGET_CPU_UTILIZATION}}}
        if on_lag:
            metric = {"type": "External", "external": {
                "metric": {"name": metrics.RECOMMEND_CONSUMER_LAG,
                           "selector": {"matchLabels": {"topic": config.topic}}},
                "target": {"type": "AverageValue", "averageValue": str(config.target_lag_per_replica)}}}
        child = pulumi.ResourceOptions(parent=self)
        k8s.autoscaling.v2.HorizontalPodAutoscaler(f"{name}-hpa", metadata=_meta(SERVICE_ACCOUNT, labels),
                                                   spec=manifest_block({
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": SERVICE_ACCOUNT},
            "minReplicas": config.min_replicas,
            "maxReplicas": config.max_replicas,
            "metrics": [metric],
            # Each scale step rebalances the whole group: add fast while lag builds, remove one at a time slowly.
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 300,
                                       "policies": [{"type": "Pods", "value": 1, "periodSeconds": 120}]},
                         "scaleUp": {"stabilizationWindowSeconds": 60,
                                     "policies": [{"type": "Pods", "value": 2, "periodSeconds": 60}]}},
        }), opts=child)
        k8s.policy.v1.PodDisruptionBudget(f"{name}-pdb", metadata=_meta(SERVICE_ACCOUNT, labels), spec=manifest_block({
            "maxUnavailable": 1, "selector": {"matchLabels": {NAME_LABEL: SERVICE_ACCOUNT}},
        }), opts=child)

    def _network_policy(self, name: str, labels: dict[str, str], kafka_egress: Sequence[Rule],
                        redis_egress: Sequence[Rule], mesh: bool, scraped: bool) -> None:
        """Ingress only from Prometheus to /metrics' port; egress to Kafka and Redis as the stack wires them (and
        istiod); DNS is namespace-wide (infra/k8s/netpol.py)."""
        ingress_rules = [from_prometheus(METRICS_PORT)] if scraped else []
        network_policy(f"{name}-netpol", policy_name=SERVICE_ACCOUNT, namespace=NAMESPACE, labels=labels,
                       opts=pulumi.ResourceOptions(parent=self),
                       spec=allow_spec(select({NAME_LABEL: SERVICE_ACCOUNT}), ingress_rules=ingress_rules,
                                       egress_rules=[*kafka_egress, *redis_egress,
                                                     *([sidecar_egress()] if mesh else [])]))

    def _authorization(self, name: str, labels: dict[str, str], scraped: bool) -> None:
        """The processor serves nothing but /metrics: a DENY policy (DENY wins over the namespace's ALLOWs, the
        ingress gateway's say) refuses every request but Prometheus's to /metrics on its port, or every request
        when nothing scrapes."""
        rules: list[dict[str, Any]] = [{}]  # one empty rule matches every request
        if scraped:
            rules = [{"from": [{"source": {"notPrincipals": [PROMETHEUS_PRINCIPAL]}}]},
                     {"to": [{"operation": {"notPorts": [str(METRICS_PORT)]}}]},
                     {"to": [{"operation": {"notPaths": ["/metrics"]}}]}]
        k8s.apiextensions.CustomResource(
            f"{name}-authz", api_version="security.istio.io/v1", kind="AuthorizationPolicy",
            metadata=_meta(SERVICE_ACCOUNT, labels),
            spec={"selector": {"matchLabels": {NAME_LABEL: SERVICE_ACCOUNT}}, "action": "DENY",
                  "rules": rules},
            opts=pulumi.ResourceOptions(parent=self))

    def _monitoring(self, name: str, config: RecommendConfig, labels: dict[str, str], mesh: bool) -> None:
        """A Service for /metrics and its ServiceMonitor (over mTLS in the mesh: a ServiceMonitor, unlike a
        PodMonitor, takes the certificate files Prometheus's sidecar writes), and the alert thresholds."""
        child = pulumi.ResourceOptions(parent=self)
        k8s.core.v1.Service(f"{name}-metrics", metadata=_meta(f"{SERVICE_ACCOUNT}-metrics", labels),
                            spec=manifest_block({
            "selector": {NAME_LABEL: SERVICE_ACCOUNT}, "clusterIP": "None",
            # The `http` name tells Istio the protocol, and is the port scrape_endpoint() scrapes.
            "ports": [{"name": "http", "port": METRICS_PORT, "targetPort": "metrics", "protocol": "TCP"}],
        }), opts=child)
        k8s.apiextensions.CustomResource(
            f"{name}-monitor", api_version="monitoring.coreos.com/v1", kind="ServiceMonitor",
            metadata=_meta(SERVICE_ACCOUNT, labels),
            spec={"selector": {"matchLabels": {NAME_LABEL: SERVICE_ACCOUNT, COMPONENT_LABEL: COMPONENT}},
                  "endpoints": [scrape_endpoint(mesh)]},
            opts=child)
        # Series the rules of infra/k8s/rules/recommend.yaml compare with, labelled like the processor's own.
        thresholds = {metrics.RECOMMEND_FRESHNESS_BUDGET: config.freshness_budget_seconds,
                      metrics.RECOMMEND_LAG_THRESHOLD: config.lag_alert_messages}
        k8s.apiextensions.CustomResource(
            f"{name}-thresholds", api_version="monitoring.coreos.com/v1", kind="PrometheusRule",
            metadata=_meta(f"{SERVICE_ACCOUNT}-thresholds", labels),
            spec={"groups": [{"name": "modelplane.recommend.thresholds", "rules": [
                {"record": record, "expr": f"vector({value:g})",
                 "labels": {"namespace": NAMESPACE, "topic": config.topic}}
                for record, value in thresholds.items()]}]},
            opts=child)


def _meta(name: str, labels: Mapping[str, str]) -> k8s.meta.v1.ObjectMetaArgsDict:
    return {"name": name, "namespace": NAMESPACE, "labels": dict(labels)}
