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
from infra.k8s.mesh import SYSTEM_NAMESPACE as MESH_NAMESPACE
from infra.k8s.namespaces import INFERENCE_NAMESPACE
from infra.k8s.observability import NAMESPACE as MONITORING_NAMESPACE
from infra.k8s.observability import PROMETHEUS_POD_LABELS, PROMETHEUS_PRINCIPAL, scrape_endpoint
from infra.k8s.podspec import container_resources, container_security_context, manifest_block, pod_security_context
from workloads.common import metrics
from workloads.common.vocab import COMPONENT_LABEL
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
DNS_PORT: Final = 53
"""Cluster DNS (CoreDNS in kube-system on EKS, kind and minikube)."""
ISTIOD_XDS_PORT: Final = 15012
"""istiod's xDS and certificate port, which a sidecar must reach (istio.io, "Ports used by Istio")."""
POD_IDENTITY_AGENT: Final = ("169.254.170.23/32", 80)
"""The EKS Pod Identity agent's link-local address and port, where the AWS SDK fetches the role's credentials
(docs.aws.amazon.com/eks/latest/userguide/pod-id-how-it-works.html)."""


class StreamProcessor(pulumi.ComponentResource):
    """ServiceAccount, Deployment, HPA on consumer lag, PDB, NetworkPolicy, and with `monitoring` a metrics Service,
    ServiceMonitor and the alert thresholds; with `mesh` an Istio AuthorizationPolicy."""

    deployment_name: str
    """Name of the processor's Deployment (also of its HPA, PDB and policies)."""

    def __init__(self, name: str, config: RecommendConfig, *, image: str, bootstrap_servers: pulumi.Input[str],
                 redis_url: pulumi.Input[str], kafka_ports: Sequence[int], redis_port: int,
                 kafka_settings: Mapping[str, pulumi.Input[str]] | None = None, aws_credentials: bool = False,
                 mesh: bool = True, monitoring: bool = True, opts: pulumi.ResourceOptions | None = None) -> None:
        """`config` is the stack's `recommend` section; `image` the processor image (pinned); `bootstrap_servers`
        and `kafka_ports` the brokers; `redis_url` the feature store (with its password: kept in a Secret) and
        `redis_port` its port; `kafka_settings` further processor settings by field name (the client's auth on
        MSK); `aws_credentials` lets the pod reach the EKS Pod Identity agent; `mesh` adds the Istio policy;
        `monitoring` the scrape target and thresholds, which need the observability stack's CRDs and adapter."""
        super().__init__("modelplane:recommend:StreamProcessor", name, None, opts)
        unknown = sorted(set(kafka_settings or {}) - set(ProcessorSettings.model_fields))
        if unknown:
            raise pulumi.InputPropertiesError("invalid StreamProcessor args", [pulumi.InputPropertyErrorDetails(
                property_path="kafka_settings", reason=f"{unknown} are not ProcessorSettings fields "
                                                       f"(known: {sorted(ProcessorSettings.model_fields)})")])
        self.deployment_name = SERVICE_ACCOUNT
        labels = {"app.kubernetes.io/name": SERVICE_ACCOUNT, COMPONENT_LABEL: COMPONENT,
                  "app.kubernetes.io/managed-by": "modelplane"}
        child = pulumi.ResourceOptions(parent=self)
        k8s.core.v1.ServiceAccount(f"{name}-sa", metadata=_meta(SERVICE_ACCOUNT, labels),
                                   # It never calls the Kubernetes API; Pod Identity injects AWS credentials itself.
                                   automount_service_account_token=False, opts=child)
        secret = k8s.core.v1.Secret(f"{name}-redis", metadata=_meta(f"{SERVICE_ACCOUNT}-redis", labels),
                                    string_data={"url": redis_url}, opts=child)
        settings: dict[str, pulumi.Input[str]] = {
            "bootstrap_servers": bootstrap_servers, "topic": config.topic, "group_id": config.group_id,
            "metrics_port": str(METRICS_PORT), **(kafka_settings or {}),
        }
        if config.dead_letter_topic:
            settings["dead_letter_topic"] = config.dead_letter_topic
        env: list[dict[str, Any]] = [{"name": ProcessorSettings.env_name(key), "value": value}
                                     for key, value in sorted(settings.items())]
        env.append({"name": ProcessorSettings.env_name("redis_url"),
                    "valueFrom": {"secretKeyRef": {"name": secret.metadata.name, "key": "url"}}})
        self._deployment(name, config, image, env, labels)
        self._autoscaling(name, config, labels, monitoring)
        self._network_policy(name, labels, kafka_ports, redis_port, aws_credentials, mesh, monitoring)
        if mesh:
            self._authorization(name, labels, monitoring)
        if monitoring:
            self._monitoring(name, config, labels, mesh)
        self.register_outputs({"deployment_name": self.deployment_name})

    def _deployment(self, name: str, config: RecommendConfig, image: str, env: list[dict[str, Any]],
                    labels: dict[str, str]) -> None:
        selector = {"app.kubernetes.io/name": SERVICE_ACCOUNT}
        container = {
            "name": "processor", "image": image, "command": ["python", "-m", MODULE], "env": env,
            "ports": [{"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"}],
            # /metrics answers while the process runs; a consumer has no traffic to be made ready for.
            "livenessProbe": {"httpGet": {"path": "/metrics", "port": "metrics"}, "periodSeconds": 20,
                              "failureThreshold": 3},
            "resources": container_resources(config.cpu, config.memory, 0),
            "securityContext": container_security_context(),
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
                    "securityContext": pod_security_context(),
                    "terminationGracePeriodSeconds": TERMINATION_GRACE_S,
                    "containers": [container],
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
            "maxUnavailable": 1, "selector": {"matchLabels": {"app.kubernetes.io/name": SERVICE_ACCOUNT}},
        }), opts=child)

    def _network_policy(self, name: str, labels: dict[str, str], kafka_ports: Sequence[int], redis_port: int,
                        aws_credentials: bool, mesh: bool, scraped: bool) -> None:
        """Ingress only from Prometheus to /metrics' port; egress to DNS, Kafka, Redis (and istiod, Pod Identity).

        Kafka and Redis are matched by port only: MSK brokers and ElastiCache nodes have no pod or namespace to
        select, and their addresses change with failovers; their security groups admit only the cluster."""
        def tcp(*ports: int) -> list[dict[str, Any]]:
            return [{"protocol": "TCP", "port": port} for port in ports]

        system = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}}
        egress: list[dict[str, Any]] = [
            {"to": [system], "ports": [{"protocol": "UDP", "port": DNS_PORT}, *tcp(DNS_PORT)]},
            {"ports": tcp(*sorted(set(kafka_ports)), redis_port)},
        ]
        if mesh:
            egress.append({"to": [{"namespaceSelector": {"matchLabels": {
                "kubernetes.io/metadata.name": MESH_NAMESPACE}}}], "ports": tcp(ISTIOD_XDS_PORT)})
        if aws_credentials:
            egress.append({"to": [{"ipBlock": {"cidr": POD_IDENTITY_AGENT[0]}}], "ports": tcp(POD_IDENTITY_AGENT[1])})
        ingress = [{"from": [{
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": MONITORING_NAMESPACE}},
            "podSelector": {"matchLabels": dict(PROMETHEUS_POD_LABELS)},
        }], "ports": tcp(METRICS_PORT)}] if scraped else []
        k8s.networking.v1.NetworkPolicy(f"{name}-netpol", metadata=_meta(SERVICE_ACCOUNT, labels),
                                        spec=manifest_block({
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": SERVICE_ACCOUNT}},
            "policyTypes": ["Ingress", "Egress"], "ingress": ingress, "egress": egress,
        }), opts=pulumi.ResourceOptions(parent=self))

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
            spec={"selector": {"matchLabels": {"app.kubernetes.io/name": SERVICE_ACCOUNT}}, "action": "DENY",
                  "rules": rules},
            opts=pulumi.ResourceOptions(parent=self))

    def _monitoring(self, name: str, config: RecommendConfig, labels: dict[str, str], mesh: bool) -> None:
        """A Service for /metrics and its ServiceMonitor (over mTLS in the mesh: a ServiceMonitor, unlike a
        PodMonitor, takes the certificate files Prometheus's sidecar writes), and the alert thresholds."""
        child = pulumi.ResourceOptions(parent=self)
        k8s.core.v1.Service(f"{name}-metrics", metadata=_meta(f"{SERVICE_ACCOUNT}-metrics", labels),
                            spec=manifest_block({
            "selector": {"app.kubernetes.io/name": SERVICE_ACCOUNT}, "clusterIP": "None",
            # The `http` name tells Istio the protocol, and is the port scrape_endpoint() scrapes.
            "ports": [{"name": "http", "port": METRICS_PORT, "targetPort": "metrics", "protocol": "TCP"}],
        }), opts=child)
        k8s.apiextensions.CustomResource(
            f"{name}-monitor", api_version="monitoring.coreos.com/v1", kind="ServiceMonitor",
            metadata=_meta(SERVICE_ACCOUNT, labels),
            spec={"selector": {"matchLabels": {"app.kubernetes.io/name": SERVICE_ACCOUNT, COMPONENT_LABEL: COMPONENT}},
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
