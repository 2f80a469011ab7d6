"""`Observability`: kube-prometheus-stack, alert rules and dashboards kept as data, and custom metrics for HPAs.

- kube-prometheus-stack (Prometheus operator, Prometheus, Alertmanager, Grafana, kube-state-metrics,
  node-exporter), pinned in infra/versions.py and sized by the `modelplane:observability` section.
  The `*SelectorNilUsesHelmValues: false` flags make Prometheus select every ServiceMonitor,
  PodMonitor and PrometheusRule in the cluster, not only those labelled `release: <this release>`
  (templates/prometheus/prometheus.yaml of the chart).
- Alert rules: each infra/k8s/rules/*.yaml is a plain Prometheus rule file (checked and unit-tested by
  `promtool`) and becomes one `PrometheusRule` whose spec is the file's `groups`.
- Dashboards: each infra/k8s/dashboards/*.json becomes a ConfigMap labelled for Grafana's dashboard
  sidecar (`grafana_dashboard: "1"`, the chart's default sidecar label).
- prometheus-adapter serves `modelplane_inference_queue_depth` and
  `modelplane_inference_in_flight_requests` per pod on custom.metrics.k8s.io for the inference HPA, and
  vLLM's `vllm:num_requests_waiting` as `vllm_num_requests_waiting` for the vLLM runtime's HPA; and on
  external.metrics.k8s.io the recommendation processor's consumer lag summed per topic, for its HPA.

NetworkPolicies (infra/k8s/netpol.py; the namespace starts from default-deny): the stack's pods reach each other
(Prometheus scrapes the operator, kube-state-metrics, Alertmanager and Grafana; Grafana and the adapter query
Prometheus); Prometheus reaches anything, since its targets include the nodes' own addresses (kubelet,
node-exporter on the host network) and every namespace's metrics ports, which admit it with `from_prometheus`;
every pod but Alertmanager calls the Kubernetes API (service discovery, the operator, kube-state-metrics, Grafana's
dashboard sidecar, the adapter, the admission Jobs); the API server reaches the operator's admission webhook and
the adapter's aggregated API; with `alerting` receivers, Alertmanager reaches any address on 443 (infra/k8s/alerting.py).

Scraping meshed pods under STRICT mTLS: an Istio sidecar rejects plaintext, and the serving port
carries both the API and /metrics, so making it PERMISSIVE would also open the API. Prometheus
instead gets a sidecar that captures no traffic and only writes its workload certificate to a
shared volume, as Istio documents (https://istio.io/latest/docs/ops/integrations/prometheus/#tls-settings;
the same annotations as the "mock-prom" of Istio's tests/integration/telemetry/api/setup_test.go); the serving ServiceMonitor
scrapes over https with that certificate, so the mesh sees Prometheus's principal, which the
`Mesh` authorization policies allow on the metrics paths.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random
import yaml

from infra import versions
from infra.config.platform import ObservabilityConfig
from infra.k8s.alerting import alertmanager_values
from infra.k8s.mesh import principal
from infra.k8s.namespaces import INFERENCE_NAMESPACE, TRAINING_NAMESPACE, Namespaces
from infra.k8s.netpol import (
    Rule,
    allow_spec,
    egress,
    from_anywhere,
    ingress,
    namespace_peer,
    network_policy,
    same_namespace,
    select,
    tcp,
    to_anything,
    to_https,
    to_kube_api,
)
from workloads.common import metrics
from workloads.common.vocab import COMPONENT_LABEL, JOBSET_ENV, MANAGED_BY_LABELS, NAME_LABEL

RULES_DIR: Final = Path(__file__).resolve().parent / "rules"
"""Alert rule files, one PrometheusRule each (unit tests in rules/tests/)."""
DASHBOARDS_DIR: Final = Path(__file__).resolve().parent / "dashboards"
"""Grafana dashboards as JSON, one ConfigMap each."""
NAMESPACE: Final = "monitoring"
"""Namespace of the stack, the adapter, the rules, the monitors and the dashboards."""
RELEASE: Final = "kube-prometheus-stack"
"""Helm release name; the chart names its objects after it (Service kube-prometheus-stack-prometheus)."""
PROMETHEUS_SERVICE_ACCOUNT: Final = "prometheus"
"""Prometheus's ServiceAccount, named explicitly so its mTLS principal is stable."""
PROMETHEUS_PRINCIPAL: Final = principal(NAMESPACE, PROMETHEUS_SERVICE_ACCOUNT)
"""Prometheus's mTLS principal (allowed to scrape by the mesh and by meshed services)."""
PROMETHEUS_POD_LABELS: Final = {NAME_LABEL: "prometheus"}
"""Labels of the Prometheus pods, for NetworkPolicy peers (prometheus-operator pkg/prometheus/statefulset.go)."""
LEADER_POD_LABELS: Final = {JOBSET_ENV["JOBSET_JOB_INDEX"]: "0", "batch.kubernetes.io/job-completion-index": "0"}
"""Labels of a training job's leader pod, the one serving /metrics: Job 0 of its replicated Job (JobSet) and pod 0
of that Indexed Job (Kubernetes, kubernetes.io/docs/reference/labels-annotations-taints); rank 0 of a TrainJob's
`node` Job, worker 0 of a TF JobSet."""
PROMETHEUS_SERVICE: Final = f"http://{RELEASE}-prometheus.{NAMESPACE}.svc"
"""Prometheus's in-cluster Service (the chart's `<release>-prometheus`), which serves on PROMETHEUS_PORT."""
PROMETHEUS_PORT: Final = 9090
"""Port of Prometheus's HTTP API on its Service."""
PROMETHEUS_URL: Final = f"{PROMETHEUS_SERVICE}:{PROMETHEUS_PORT}"
"""In-cluster URL of Prometheus's HTTP API."""
DASHBOARD_LABEL: Final = ("grafana_dashboard", "1")
"""Label (key, value) Grafana's dashboard sidecar watches (chart default grafana.sidecar.dashboards.label/labelValue)."""
GRAFANA_ADMIN_SECRET: Final = "grafana-admin"
"""Secret holding Grafana's admin user and generated password (keys GRAFANA_ADMIN_KEYS)."""
GRAFANA_ADMIN_KEYS: Final = ("admin-user", "admin-password")
"""The admin Secret's keys: user, password (the chart's default admin.userKey and admin.passwordKey)."""
GRAFANA_ADMIN_DIR: Final = "/etc/secrets/grafana-admin"
"""Where Grafana and its sidecars read the admin Secret's keys as read-only files."""
STORAGE_CLASS_PROVISIONER: Final = "ebs.csi.aws.com"
"""The EBS CSI driver (EKS add-on aws-ebs-csi-driver) provisions the gp3 class."""
HPA_METRICS: Final = (metrics.INFERENCE_QUEUE_DEPTH, metrics.INFERENCE_IN_FLIGHT)
"""Gauges prometheus-adapter serves per pod on custom.metrics.k8s.io, under their own names."""
VLLM_WAITING_HPA_METRIC: Final = metrics.VLLM_REQUESTS_WAITING.replace(":", "_")
"""The name prometheus-adapter serves vLLM's waiting-requests gauge under: renamed with the rule's `name.as`
(kubernetes-sigs/prometheus-adapter docs/config.md, "Naming") so the custom metric's name, a path segment of
custom.metrics.k8s.io, keeps to the [a-z0-9_] of our own metric names."""
OPERATOR_WEBHOOK_PORT: Final = 10250
"""The prometheus-operator's admission webhook port (chart default prometheusOperator.tls.internalPort)."""
ADAPTER_PORT: Final = 6443
"""prometheus-adapter's aggregated API port (chart default listenPort)."""
OPERATOR_POD_LABELS: Final = {"app": f"{RELEASE}-operator", "release": RELEASE}
"""The prometheus-operator pod's selector labels (kube-prometheus-stack templates/prometheus-operator/deployment.yaml,
spec.selector.matchLabels: `<chart name>-operator` and the release name)."""
ADAPTER_RELEASE: Final = "prometheus-adapter"
"""Helm release name of prometheus-adapter (also its chart's name)."""
ADAPTER_POD_LABELS: Final = {NAME_LABEL: "prometheus-adapter", "app.kubernetes.io/instance": ADAPTER_RELEASE}
"""prometheus-adapter's pod selector labels: chart name and release name (its templates/_helpers.tpl selectorLabels)."""
ALERTMANAGER_POD_LABELS: Final = {NAME_LABEL: "alertmanager"}
"""Labels of the Alertmanager pods (prometheus-operator pkg/alertmanager/statefulset.go)."""
ISTIO_CERTS_DIR: Final = "/etc/prom-certs"
"""Where the Prometheus container reads the workload certificate its Istio sidecar writes."""
_ISTIO_OUTPUT_DIR: Final = "/etc/istio-output-certs"
_LABELS: Final = {"app.kubernetes.io/part-of": "modelplane", **MANAGED_BY_LABELS}


class Observability(pulumi.ComponentResource):
    """Prometheus, Alertmanager and Grafana with our rules, monitors and dashboards; prometheus-adapter.

    Takes the `observability` section; `storage_class` names the Prometheus volume's class (None: the cluster
    default), which `create_storage_class` creates as encrypted gp3 of the EBS CSI driver (EKS ships none);
    `mesh_scraping` scrapes serving pods over Istio mTLS with a certificate-only sidecar; `team_namespaces` are
    the teams' namespaces, whose training pods are scraped like those of `training`.
    """

    prometheus_url: str
    """In-cluster URL of Prometheus's HTTP API."""
    operator: pulumi.Resource
    """The kube-prometheus-stack release: depend on it before creating ServiceMonitors or PodMonitors (its CRDs)."""

    def __init__(self, name: str, config: ObservabilityConfig, *, storage_class: str | None, create_storage_class: bool,
                 mesh_scraping: bool, team_namespaces: Sequence[str] = (),
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("modelplane:observability:Observability", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        rule_files = load_rule_files()
        dashboards = load_dashboards() if config.grafana else {}
        # node-exporter mounts host paths and uses the host network and PID namespace: privileged.
        namespace = Namespaces(f"{name}-namespace", {NAMESPACE: "privileged"}, opts=child).names[NAMESPACE]
        prerequisites: list[pulumi.Resource] = []
        if config.storage_gb and create_storage_class and storage_class:
            prerequisites.append(self._storage_class(name, storage_class))
        if config.grafana:
            prerequisites.append(self._grafana_admin(name, namespace))
        stack = k8s.helm.v3.Release(
            f"{name}-kube-prometheus-stack", name=RELEASE, chart="kube-prometheus-stack",
            version=versions.KUBE_PROMETHEUS_STACK_VERSION,
            repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=versions.PROMETHEUS_COMMUNITY_REPO),
            namespace=namespace, values=_stack_values(config, storage_class, mesh_scraping), timeout=900,
            opts=pulumi.ResourceOptions(parent=self, depends_on=prerequisites),
        )
        with_crds = pulumi.ResourceOptions(parent=self, depends_on=[stack])
        for stem, groups in rule_files.items():
            k8s.apiextensions.CustomResource(
                f"{name}-rules-{stem}", api_version="monitoring.coreos.com/v1", kind="PrometheusRule",
                metadata={"name": f"modelplane-{stem}", "namespace": NAMESPACE, "labels": dict(_LABELS)},
                spec={"groups": groups}, opts=with_crds,
            )
        self._workload_monitors(name, mesh_scraping, team_namespaces, with_crds)
        for stem, text in dashboards.items():
            k8s.core.v1.ConfigMap(
                f"{name}-dashboard-{stem}",
                metadata=k8s.meta.v1.ObjectMetaArgs(
                    name=f"modelplane-dashboard-{stem}", namespace=namespace,
                    labels={**_LABELS, DASHBOARD_LABEL[0]: DASHBOARD_LABEL[1]}),
                data={f"modelplane-{stem}.json": text}, opts=child,
            )
        k8s.helm.v3.Release(
            f"{name}-prometheus-adapter", name=ADAPTER_RELEASE, chart="prometheus-adapter",
            version=versions.PROMETHEUS_ADAPTER_VERSION,
            repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=versions.PROMETHEUS_COMMUNITY_REPO),
            namespace=namespace, values=_adapter_values(), opts=with_crds,
        )
        self._network_policies(name, namespace)
        if config.alertmanager and config.alerting:  # PagerDuty, Slack and webhooks answer on 443 outside the cluster.
            network_policy(f"{name}-alertmanager-netpol", policy_name="alertmanager-receivers", namespace=namespace,
                           opts=child, spec=allow_spec(select(ALERTMANAGER_POD_LABELS), egress_rules=[to_https()]))
        self.operator = stack
        self.prometheus_url = PROMETHEUS_URL
        self.register_outputs({"prometheus_url": self.prometheus_url})

    def _network_policies(self, name: str, namespace: pulumi.Input[str]) -> None:
        child = pulumi.ResourceOptions(parent=self)
        network_policy(f"{name}-within-netpol", policy_name="allow-within-namespace", namespace=namespace,
                       opts=child, spec=allow_spec(select(), ingress_rules=[ingress([same_namespace()])],
                                                   egress_rules=[egress([same_namespace()])]))
        network_policy(f"{name}-prometheus-netpol", policy_name="prometheus", namespace=namespace, opts=child,
                       spec=allow_spec(select(PROMETHEUS_POD_LABELS), egress_rules=[to_anything()]))
        callers = {"matchExpressions": [{"key": key, "operator": "NotIn", "values": [value]}
                                        for key, value in ALERTMANAGER_POD_LABELS.items()]}
        network_policy(f"{name}-kube-api-netpol", policy_name="allow-kube-api", namespace=namespace, opts=child,
                       spec=allow_spec(callers, egress_rules=[to_kube_api()]))
        # The API server calls from the control plane's addresses: the operator's admission webhook, the adapter's
        # aggregated API; each port opens on its own pod only.
        network_policy(f"{name}-operator-webhook-netpol", policy_name="allow-api-server-to-operator", namespace=namespace,
                       opts=child, spec=allow_spec(select(OPERATOR_POD_LABELS),
                                                   ingress_rules=[from_anywhere(OPERATOR_WEBHOOK_PORT)]))
        network_policy(f"{name}-adapter-api-netpol", policy_name="allow-api-server-to-adapter", namespace=namespace,
                       opts=child, spec=allow_spec(select(ADAPTER_POD_LABELS),
                                                   ingress_rules=[from_anywhere(ADAPTER_PORT)]))

    def _storage_class(self, name: str, class_name: str) -> k8s.storage.v1.StorageClass:
        # Parameters of the EBS CSI driver (kubernetes-sigs/aws-ebs-csi-driver docs/parameters.md).
        # WaitForFirstConsumer creates the volume in the AZ the pod is scheduled to (EBS is zonal).
        return k8s.storage.v1.StorageClass(
            f"{name}-{class_name}", metadata=k8s.meta.v1.ObjectMetaArgs(name=class_name, labels=dict(_LABELS)),
            provisioner=STORAGE_CLASS_PROVISIONER,
            parameters={"type": "gp3", "encrypted": "true", "csi.storage.k8s.io/fstype": "ext4"},
            reclaim_policy="Delete", volume_binding_mode="WaitForFirstConsumer", allow_volume_expansion=True,
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _grafana_admin(self, name: str, namespace: pulumi.Input[str]) -> k8s.core.v1.Secret:
        password = random.RandomPassword(f"{name}-grafana-admin", length=32, special=False,
                                         opts=pulumi.ResourceOptions(parent=self))
        # The chart reads it through grafana.admin.existingSecret; the password never enters Helm values.
        return k8s.core.v1.Secret(
            f"{name}-grafana-admin",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=GRAFANA_ADMIN_SECRET, namespace=namespace, labels=dict(_LABELS)),
            type="Opaque", string_data={GRAFANA_ADMIN_KEYS[0]: "admin", GRAFANA_ADMIN_KEYS[1]: password.result},
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _workload_monitors(self, name: str, mesh_scraping: bool, team_namespaces: Sequence[str],
                           opts: pulumi.ResourceOptions) -> None:
        serving_endpoint = scrape_endpoint(mesh_scraping) | {
            # A Service annotated prometheus.io/path (TF Serving) is scraped at that path instead.
            "relabelings": [{"sourceLabels": ["__meta_kubernetes_service_annotation_prometheus_io_path"],
                             "regex": "(.+)", "targetLabel": "__metrics_path__", "action": "replace"}],
        }
        k8s.apiextensions.CustomResource(
            f"{name}-serving-monitor", api_version="monitoring.coreos.com/v1", kind="ServiceMonitor",
            metadata={"name": "modelplane-serving", "namespace": NAMESPACE, "labels": dict(_LABELS)},
            spec={
                "namespaceSelector": {"matchNames": [INFERENCE_NAMESPACE]},
                "selector": {"matchLabels": {COMPONENT_LABEL: "inference"}},
                "endpoints": [serving_endpoint],
            },
            opts=opts,
        )
        # Training pods are outside the mesh (plain http). Only rank 0 (a TrainJob) / worker 0 (a TF JobSet)
        # serves /metrics: the first pod of the first Job of its JobSet.
        k8s.apiextensions.CustomResource(
            f"{name}-training-monitor", api_version="monitoring.coreos.com/v1", kind="PodMonitor",
            metadata={"name": "modelplane-training", "namespace": NAMESPACE, "labels": dict(_LABELS)},
            spec={
                "namespaceSelector": {"matchNames": [TRAINING_NAMESPACE, *team_namespaces]},
                "selector": {"matchLabels": {COMPONENT_LABEL: "training", **LEADER_POD_LABELS}},
                "podMetricsEndpoints": [{"port": "metrics", "path": "/metrics", "interval": "30s"}],
            },
            opts=opts,
        )


def from_prometheus(*ports: int | str) -> Rule:
    """Ingress from the Prometheus pods on `ports` (a workload's metrics ports)."""
    return ingress([namespace_peer(NAMESPACE, PROMETHEUS_POD_LABELS)], tcp(*ports))


def scrape_endpoint(mesh_scraping: bool) -> dict[str, Any]:
    """A ServiceMonitor endpoint scraping the `http` port's /metrics, over Istio mTLS with Prometheus's workload
    certificate when `mesh_scraping`."""
    endpoint: dict[str, Any] = {"port": "http", "path": "/metrics", "interval": "15s"}
    if mesh_scraping:
        # "Prometheus does not support Istio security naming, thus skip verifying target pod
        # certificate" (istio.io, Prometheus integration, TLS settings); the client certificate is what matters.
        endpoint |= {"scheme": "https", "tlsConfig": {
            "caFile": f"{ISTIO_CERTS_DIR}/root-cert.pem", "certFile": f"{ISTIO_CERTS_DIR}/cert-chain.pem",
            "keyFile": f"{ISTIO_CERTS_DIR}/key.pem", "insecureSkipVerify": True}}
    return endpoint


def load_rule_files(directory: Path = RULES_DIR) -> dict[str, list[dict[str, Any]]]:
    """Each rule file's `groups`, by file stem, sorted."""
    out: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(directory.glob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        if not isinstance(doc, dict) or not isinstance(doc.get("groups"), list) or not doc["groups"]:
            raise ValueError(f"{path}: a rule file must have a non-empty top-level 'groups' list")
        out[path.stem] = doc["groups"]
    return out


def load_dashboards(directory: Path = DASHBOARDS_DIR) -> dict[str, str]:
    """Each dashboard's JSON text, by file stem, sorted (parsed once to fail early on bad JSON)."""
    out: dict[str, str] = {}
    for path in sorted(directory.glob("*.json")):
        text = path.read_text()
        json.loads(text)
        out[path.stem] = text
    return out


def _stack_values(config: ObservabilityConfig, storage_class: str | None, mesh_scraping: bool) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "retention": f"{config.retention_days}d",
        "ruleSelectorNilUsesHelmValues": False,
        "serviceMonitorSelectorNilUsesHelmValues": False,
        "podMonitorSelectorNilUsesHelmValues": False,
        "probeSelectorNilUsesHelmValues": False,
        "scrapeConfigSelectorNilUsesHelmValues": False,
    }
    if config.retention_size_gb:
        spec["retentionSize"] = f"{config.retention_size_gb}GiB"
    if config.storage_gb:
        claim: dict[str, Any] = {"accessModes": ["ReadWriteOnce"],
                                 "resources": {"requests": {"storage": f"{config.storage_gb}Gi"}}}
        if storage_class:
            claim["storageClassName"] = storage_class
        spec["storageSpec"] = {"volumeClaimTemplate": {"spec": claim}}
    if mesh_scraping:
        spec |= _istio_certificate_sidecar()
    values: dict[str, Any] = {
        "alertmanager": {"enabled": config.alertmanager} | alertmanager_values(config.alerting),
        "grafana": {"enabled": config.grafana},
        "prometheus": {"serviceAccount": {"create": True, "name": PROMETHEUS_SERVICE_ACCOUNT}, "prometheusSpec": spec},
    }
    if config.grafana:
        values["grafana"] |= _grafana_values()
    return values


def _grafana_values() -> dict[str, Any]:
    """Grafana's values: our admin Secret as files, and the dashboard sidecar watching every namespace.

    The grafana chart (12.11.1, templates/_pod.tpl) gives the grafana container GF_SECURITY_ADMIN_USER/PASSWORD, and
    the dashboard and datasource sidecars REQ_USERNAME/REQ_PASSWORD, as `secretKeyRef` env vars unless
    `env.GF_SECURITY_ADMIN_USER__FILE` and `env.GF_SECURITY_ADMIN_PASSWORD__FILE` are set; then the Secret is mounted
    (`extraSecretMounts`), the Grafana image's entrypoint reads the `__FILE` paths at start (grafana/grafana
    packaging/docker/run.sh), and the sidecars (kiwigrid/k8s-sidecar 2.10.1, which reads REQ_USERNAME_FILE and
    REQ_PASSWORD_FILE) the same files to call Grafana's reload API. No pod spec then holds a `secretKeyRef` env var.
    `admin.existingSecret` keeps the chart from generating a Secret of its own (templates/secret.yaml)."""
    user, password = (f"{GRAFANA_ADMIN_DIR}/{key}" for key in GRAFANA_ADMIN_KEYS)
    mount = {"name": GRAFANA_ADMIN_SECRET, "mountPath": GRAFANA_ADMIN_DIR, "readOnly": True}
    sidecar_auth = {"env": {"REQ_USERNAME_FILE": user, "REQ_PASSWORD_FILE": password}, "extraMounts": [mount]}
    return {
        "admin": {"existingSecret": GRAFANA_ADMIN_SECRET, "userKey": GRAFANA_ADMIN_KEYS[0],
                  "passwordKey": GRAFANA_ADMIN_KEYS[1]},
        "env": {"GF_SECURITY_ADMIN_USER__FILE": user, "GF_SECURITY_ADMIN_PASSWORD__FILE": password},
        # 0440: read by the user and group 472 every container runs as (the chart's securityContext, fsGroup 472).
        "extraSecretMounts": [{**mount, "secretName": GRAFANA_ADMIN_SECRET, "defaultMode": 0o440}],
        "sidecar": {
            "dashboards": {"enabled": True, "label": DASHBOARD_LABEL[0], "labelValue": DASHBOARD_LABEL[1],
                           "searchNamespace": "ALL", **sidecar_auth},
            "datasources": sidecar_auth,
        },
    }


def _istio_certificate_sidecar() -> dict[str, Any]:
    """prometheusSpec fields giving Prometheus an Istio workload certificate without meshing its traffic."""
    return {
        "podMetadata": {
            # The pod label opts into injection in a namespace without an istio-injection label
            # (istiod chart templates/mutatingwebhook.yaml, "object." webhook).
            "labels": {"sidecar.istio.io/inject": "true"},
            "annotations": {
                # Capture no inbound or outbound traffic: Prometheus dials targets itself, with the certificate.
                "traffic.sidecar.istio.io/includeInboundPorts": "",
                "traffic.sidecar.istio.io/includeOutboundIPRanges": "",
                "proxy.istio.io/config": json.dumps({"proxyMetadata": {"OUTPUT_CERTS": _ISTIO_OUTPUT_DIR}}),
                "sidecar.istio.io/userVolumeMount": json.dumps([{"name": "istio-certs", "mountPath": _ISTIO_OUTPUT_DIR}]),
            },
        },
        "volumes": [{"name": "istio-certs", "emptyDir": {"medium": "Memory"}}],
        "volumeMounts": [{"name": "istio-certs", "mountPath": ISTIO_CERTS_DIR, "readOnly": True}],
    }


def _adapter_values() -> dict[str, Any]:
    # One custom-metrics rule per gauge, exposed per pod (and namespace) under its own name:
    # HPA `type: Pods` metrics read them through custom.metrics.k8s.io/v1beta1.
    served = {**{metric: metric for metric in HPA_METRICS}, metrics.VLLM_REQUESTS_WAITING: VLLM_WAITING_HPA_METRIC}
    rules = [{
        "seriesQuery": f'{metric}{{namespace!="",pod!=""}}',
        "resources": {"overrides": {"namespace": {"resource": "namespace"}, "pod": {"resource": "pod"}}},
        "name": {"matches": f"^{metric}$", "as": name},
        "metricsQuery": "sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)",
    } for metric, name in served.items()]
    # The recommendation processor's lag, summed over a topic's partitions in the HPA's namespace, on
    # external.metrics.k8s.io (docs/externalmetrics.md; the chart writes `rules.external` as `externalRules`).
    lag = metrics.RECOMMEND_CONSUMER_LAG
    external = [{"seriesQuery": f'{lag}{{namespace!="",topic!=""}}',
                 "resources": {"overrides": {"namespace": {"resource": "namespace"}}},
                 "name": {"matches": f"^{lag}$", "as": lag},
                 "metricsQuery": "sum(<<.Series>>{<<.LabelMatchers>>}) by (topic)"}]
    return {
        "prometheus": {"url": PROMETHEUS_SERVICE, "port": PROMETHEUS_PORT},
        # The default rules republish every cAdvisor series; only the HPA's metrics are needed.
        "rules": {"default": False, "custom": rules, "external": external},
    }
