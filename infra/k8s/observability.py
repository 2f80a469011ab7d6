"""`Observability`: kube-prometheus-stack, alert rules and dashboards kept as data, and custom metrics for HPAs.

- kube-prometheus-stack (Prometheus operator, Prometheus, Alertmanager, Grafana, kube-state-metrics,
  node-exporter), pinned in infra/versions.py. The `*SelectorNilUsesHelmValues: false` flags make
  Prometheus select every ServiceMonitor, PodMonitor and PrometheusRule in the cluster, not only
  those labelled `release: <this release>` (templates/prometheus/prometheus.yaml of the chart).
- Alert rules: each infra/rules/*.yaml is a plain Prometheus rule file (checked and unit-tested by
  `promtool`) and becomes one `PrometheusRule` whose spec is the file's `groups`.
- Dashboards: each infra/dashboards/*.json becomes a ConfigMap labelled for Grafana's dashboard
  sidecar (`grafana_dashboard: "1"`, the chart's default sidecar label).
- prometheus-adapter serves `modelplane_inference_queue_depth` and
  `modelplane_inference_in_flight_requests` per pod on custom.metrics.k8s.io for the inference HPA.

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random
import yaml

from infra import versions
from infra.config.errors import raise_if_invalid
from infra.k8s.mesh import principal
from infra.k8s.namespaces import Namespaces, NamespacesArgs
from workloads.common import metrics

RULES_DIR: Final = Path(__file__).resolve().parent / "rules"
"""Alert rule files, one PrometheusRule each (unit tests in rules/tests/)."""
DASHBOARDS_DIR: Final = Path(__file__).resolve().parent / "dashboards"
"""Grafana dashboards as JSON, one ConfigMap each."""
RELEASE: Final = "kube-prometheus-stack"
"""Helm release name; the chart names its objects after it (Service kube-prometheus-stack-prometheus)."""
PROMETHEUS_SERVICE_ACCOUNT: Final = "prometheus"
"""Prometheus's ServiceAccount, named explicitly so its mTLS principal is stable."""
DASHBOARD_LABEL: Final = ("grafana_dashboard", "1")
"""Label (key, value) Grafana's dashboard sidecar watches (chart default grafana.sidecar.dashboards.label/labelValue)."""
GRAFANA_ADMIN_SECRET: Final = "grafana-admin"
"""Secret holding Grafana's admin user and generated password (keys admin-user, admin-password)."""
STORAGE_CLASS_PROVISIONER: Final = "ebs.csi.aws.com"
"""The EBS CSI driver (EKS add-on aws-ebs-csi-driver) provisions the gp3 class."""
HPA_METRICS: Final = (metrics.INFERENCE_QUEUE_DEPTH, metrics.INFERENCE_IN_FLIGHT)
"""Gauges prometheus-adapter serves per pod on custom.metrics.k8s.io, under their own names."""
ISTIO_CERTS_DIR: Final = "/etc/prom-certs"
"""Where the Prometheus container reads the workload certificate its Istio sidecar writes."""
_ISTIO_OUTPUT_DIR: Final = "/etc/istio-output-certs"
_LABELS: Final = {"app.kubernetes.io/part-of": "modelplane", "app.kubernetes.io/managed-by": "modelplane"}


@dataclass(frozen=True, kw_only=True)
class ObservabilityArgs:
    """Inputs of `Observability`."""

    namespace: str = "monitoring"
    """Namespace of the stack, the adapter, the rules and the dashboards. Defaults to monitoring."""
    retention_days: int = 15
    """Prometheus time-based retention, in days. Defaults to 15. Valid: 1 to 3650."""
    retention_size_gb: int | None = None
    """Prometheus size-based retention, in GiB; must leave headroom on the volume. Defaults to none."""
    storage_gb: int = 50
    """Prometheus volume size in GiB; 0 keeps data on an emptyDir (lost on restart). Defaults to 50."""
    storage_class: str | None = "gp3"
    """StorageClass of the Prometheus volume; None uses the cluster default. Defaults to gp3."""
    create_storage_class: bool = True
    """Create `storage_class` as an encrypted gp3 class of the EBS CSI driver. Defaults to true (EKS has none)."""
    alertmanager: bool = True
    """Run Alertmanager. Defaults to true."""
    grafana: bool = True
    """Run Grafana with the repository's dashboards. Defaults to true."""
    mesh_scraping: bool = True
    """Scrape serving pods over Istio mTLS, with a certificate-only sidecar. Defaults to true; set false without a mesh."""
    inference_namespace: str = "inference"
    """Namespace of the serving pods. Defaults to inference."""
    training_namespace: str = "training"
    """Namespace of the training pods. Defaults to training."""
    workload_monitors: bool = True
    """Create the namespace-wide ServiceMonitor (serving) and PodMonitor (training). Defaults to true."""
    custom_metrics: bool = True
    """Install prometheus-adapter for the HPA's per-pod custom metrics. Defaults to true."""

    @property
    def prometheus_principal(self) -> str:
        """Prometheus's mTLS principal (allowed to scrape by the mesh)."""
        return principal(self.namespace, PROMETHEUS_SERVICE_ACCOUNT)

    @property
    def prometheus_url(self) -> str:
        """In-cluster URL of Prometheus's HTTP API."""
        return f"http://{RELEASE}-prometheus.{self.namespace}.svc:9090"


class Observability(pulumi.ComponentResource):
    """Prometheus, Alertmanager and Grafana with our rules, monitors and dashboards; prometheus-adapter."""

    prometheus_url: str
    """In-cluster URL of Prometheus's HTTP API."""
    prometheus_principal: str
    """Prometheus's mTLS principal."""
    grafana_admin_secret: str | None
    """Name of the Secret with Grafana's admin credentials (in `namespace`), when Grafana runs."""
    operator: pulumi.Resource
    """The kube-prometheus-stack release: depend on it before creating ServiceMonitors or PodMonitors (its CRDs)."""

    def __init__(self, name: str, args: ObservabilityArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("modelplane:observability:Observability", name, None, opts)
        _validate(args)
        child = pulumi.ResourceOptions(parent=self)
        rule_files = load_rule_files()
        dashboards = load_dashboards() if args.grafana else {}
        # node-exporter mounts host paths and uses the host network and PID namespace: privileged.
        namespace = Namespaces(f"{name}-namespace", NamespacesArgs(namespaces={args.namespace: "privileged"}),
                               opts=child).names[args.namespace]
        prerequisites: list[pulumi.Resource] = []
        if args.storage_gb and args.create_storage_class and args.storage_class:
            prerequisites.append(self._storage_class(name, args.storage_class))
        self.grafana_admin_secret = None
        if args.grafana:
            prerequisites.append(self._grafana_admin(name, args, namespace))
            self.grafana_admin_secret = GRAFANA_ADMIN_SECRET
        stack = k8s.helm.v3.Release(
            f"{name}-kube-prometheus-stack", name=RELEASE, chart="kube-prometheus-stack",
            version=versions.KUBE_PROMETHEUS_STACK_VERSION,
            repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=versions.PROMETHEUS_COMMUNITY_REPO),
            namespace=namespace, values=_stack_values(args), timeout=900,
            opts=pulumi.ResourceOptions(parent=self, depends_on=prerequisites),
        )
        with_crds = pulumi.ResourceOptions(parent=self, depends_on=[stack])
        for stem, groups in rule_files.items():
            k8s.apiextensions.CustomResource(
                f"{name}-rules-{stem}", api_version="monitoring.coreos.com/v1", kind="PrometheusRule",
                metadata={"name": f"modelplane-{stem}", "namespace": args.namespace, "labels": dict(_LABELS)},
                spec={"groups": groups}, opts=with_crds,
            )
        if args.workload_monitors:
            self._workload_monitors(name, args, with_crds)
        for stem, text in dashboards.items():
            k8s.core.v1.ConfigMap(
                f"{name}-dashboard-{stem}",
                metadata=k8s.meta.v1.ObjectMetaArgs(
                    name=f"modelplane-dashboard-{stem}", namespace=namespace,
                    labels={**_LABELS, DASHBOARD_LABEL[0]: DASHBOARD_LABEL[1]}),
                data={f"modelplane-{stem}.json": text}, opts=child,
            )
        if args.custom_metrics:
            k8s.helm.v3.Release(
                f"{name}-prometheus-adapter", name="prometheus-adapter", chart="prometheus-adapter",
                version=versions.PROMETHEUS_ADAPTER_VERSION,
                repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=versions.PROMETHEUS_COMMUNITY_REPO),
                namespace=namespace, values=_adapter_values(args), opts=with_crds,
            )
        self.operator = stack
        self.prometheus_url = args.prometheus_url
        self.prometheus_principal = args.prometheus_principal
        self.register_outputs({"prometheus_url": self.prometheus_url, "prometheus_principal": self.prometheus_principal,
                               "grafana_admin_secret": self.grafana_admin_secret})

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

    def _grafana_admin(self, name: str, args: ObservabilityArgs, namespace: pulumi.Input[str]) -> k8s.core.v1.Secret:
        password = random.RandomPassword(f"{name}-grafana-admin", length=32, special=False,
                                         opts=pulumi.ResourceOptions(parent=self))
        # The chart reads it through grafana.admin.existingSecret; the password never enters Helm values.
        return k8s.core.v1.Secret(
            f"{name}-grafana-admin",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=GRAFANA_ADMIN_SECRET, namespace=namespace, labels=dict(_LABELS)),
            type="Opaque", string_data={"admin-user": "admin", "admin-password": password.result},
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _workload_monitors(self, name: str, args: ObservabilityArgs, opts: pulumi.ResourceOptions) -> None:
        serving_endpoint: dict[str, Any] = {
            "port": "http", "path": "/metrics", "interval": "15s",
            # A Service annotated prometheus.io/path (TF Serving) is scraped at that path instead.
            "relabelings": [{"sourceLabels": ["__meta_kubernetes_service_annotation_prometheus_io_path"],
                             "regex": "(.+)", "targetLabel": "__metrics_path__", "action": "replace"}],
        }
        if args.mesh_scraping:
            # "Prometheus does not support Istio security naming, thus skip verifying target pod
            # certificate" (istio.io, Prometheus integration, TLS settings); the client certificate is what matters.
            serving_endpoint |= {"scheme": "https", "tlsConfig": {
                "caFile": f"{ISTIO_CERTS_DIR}/root-cert.pem", "certFile": f"{ISTIO_CERTS_DIR}/cert-chain.pem",
                "keyFile": f"{ISTIO_CERTS_DIR}/key.pem", "insecureSkipVerify": True}}
        k8s.apiextensions.CustomResource(
            f"{name}-serving-monitor", api_version="monitoring.coreos.com/v1", kind="ServiceMonitor",
            metadata={"name": "modelplane-serving", "namespace": args.namespace, "labels": dict(_LABELS)},
            spec={
                "namespaceSelector": {"matchNames": [args.inference_namespace]},
                "selector": {"matchLabels": {"app.kubernetes.io/component": "inference"}},
                "endpoints": [serving_endpoint],
            },
            opts=opts,
        )
        # Training pods are outside the mesh (plain http). Only rank 0 / the chief serves /metrics;
        # the operator labels pods with the lower-cased replica type (kubeflow/trainer v1.9.4
        # pkg/controller.v1/common/pod.go).
        k8s.apiextensions.CustomResource(
            f"{name}-training-monitor", api_version="monitoring.coreos.com/v1", kind="PodMonitor",
            metadata={"name": "modelplane-training", "namespace": args.namespace, "labels": dict(_LABELS)},
            spec={
                "namespaceSelector": {"matchNames": [args.training_namespace]},
                "selector": {"matchLabels": {"app.kubernetes.io/component": "training"}, "matchExpressions": [
                    {"key": "training.kubeflow.org/replica-type", "operator": "In", "values": ["master", "chief"]}]},
                "podMetricsEndpoints": [{"port": "metrics", "path": "/metrics", "interval": "30s"}],
            },
            opts=opts,
        )


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


def _stack_values(args: ObservabilityArgs) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "retention": f"{args.retention_days}d",
        "ruleSelectorNilUsesHelmValues": False,
        "serviceMonitorSelectorNilUsesHelmValues": False,
        "podMonitorSelectorNilUsesHelmValues": False,
        "probeSelectorNilUsesHelmValues": False,
        "scrapeConfigSelectorNilUsesHelmValues": False,
    }
    if args.retention_size_gb:
        spec["retentionSize"] = f"{args.retention_size_gb}GiB"
    if args.storage_gb:
        claim: dict[str, Any] = {"accessModes": ["ReadWriteOnce"],
                                 "resources": {"requests": {"storage": f"{args.storage_gb}Gi"}}}
        if args.storage_class:
            claim["storageClassName"] = args.storage_class
        spec["storageSpec"] = {"volumeClaimTemplate": {"spec": claim}}
    if args.mesh_scraping:
        spec |= _istio_certificate_sidecar()
    values: dict[str, Any] = {
        "alertmanager": {"enabled": args.alertmanager},
        "grafana": {"enabled": args.grafana},
        "prometheus": {"serviceAccount": {"create": True, "name": PROMETHEUS_SERVICE_ACCOUNT}, "prometheusSpec": spec},
    }
    if args.grafana:
        values["grafana"] |= {
            "admin": {"existingSecret": GRAFANA_ADMIN_SECRET, "userKey": "admin-user", "passwordKey": "admin-password"},
            "sidecar": {"dashboards": {"enabled": True, "label": DASHBOARD_LABEL[0], "labelValue": DASHBOARD_LABEL[1],
                                       "searchNamespace": "ALL"}},
        }
    return values


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


def _adapter_values(args: ObservabilityArgs) -> dict[str, Any]:
    # One custom-metrics rule per gauge, exposed per pod (and namespace) under its own name:
    # HPA `type: Pods` metrics read them through custom.metrics.k8s.io/v1beta1.
    rules = [{
        "seriesQuery": f'{metric}{{namespace!="",pod!=""}}',
        "resources": {"overrides": {"namespace": {"resource": "namespace"}, "pod": {"resource": "pod"}}},
        "name": {"matches": f"^{metric}$", "as": metric},
        "metricsQuery": "sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)",
    } for metric in HPA_METRICS]
    return {
        "prometheus": {"url": f"http://{RELEASE}-prometheus.{args.namespace}.svc", "port": 9090},
        # The default rules republish every cAdvisor series; only the HPA's metrics are needed.
        "rules": {"default": False, "custom": rules},
    }


def _validate(args: ObservabilityArgs) -> None:
    problems: list[tuple[str, str]] = []
    if not 1 <= args.retention_days <= 3650:
        problems.append(("retention_days", f"must be 1 to 3650 (got {args.retention_days})"))
    if args.storage_gb < 0:
        problems.append(("storage_gb", f"must be >= 0 (got {args.storage_gb})"))
    if args.retention_size_gb is not None:
        if args.retention_size_gb < 1:
            problems.append(("retention_size_gb", f"must be >= 1 (got {args.retention_size_gb})"))
        elif args.storage_gb and args.retention_size_gb >= args.storage_gb:
            problems.append(("retention_size_gb",
                             f"must be below storage_gb so the volume never fills (got {args.retention_size_gb} >= "
                             f"{args.storage_gb})"))
    if args.create_storage_class and args.storage_gb and not args.storage_class:
        problems.append(("storage_class", "must name the class to create when create_storage_class is true"))
    if args.inference_namespace == args.training_namespace:
        problems.append(("training_namespace", f"must differ from inference_namespace (got {args.training_namespace!r})"))
    raise_if_invalid("Observability", problems)

