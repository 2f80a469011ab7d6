"""`Trainer`: JobSet and Kubeflow Trainer v2 (TrainJob, ClusterTrainingRuntime) from their pinned Helm charts.

Facts read from github.com/kubernetes-sigs/jobset at v`versions.JOBSET_VERSION` (charts/jobset/) and
github.com/kubeflow/trainer at v`versions.TRAINER_VERSION` (charts/kubeflow-trainer/):
- each controller serves its admission webhooks on 9443 (JobSet: templates/controller/deployment.yaml port `webhook`;
  Trainer: values.yaml `manager.config.webhook.port`), called by the API server from addresses a NetworkPolicy cannot
  name; neither needs cert-manager: JobSet's `certManager.enable` defaults to false (the manager's
  `internalCertManagement` fills templates/internalcert/secret.yaml), and Trainer's `manager.config.certManagement.enable`
  defaults to true (pkg/util/cert/cert.go rotates the webhook Secret and patches the webhook configurations itself);
- JobSet's metrics are on 8443 (templates/prometheus/manager_metrics_service.yaml), scraped through the chart's
  ServiceMonitor when `prometheus.enable` (templates/prometheus/monitor.yaml); Trainer's chart has no ServiceMonitor;
- Trainer's status server (port 10443) runs only with the alpha `TrainJobStatus` feature gate, off by default
  (pkg/features/features.go), so nothing calls the manager but the API server;
- Trainer installs JobSet as a chart dependency unless `jobset.install: false` (Chart.yaml `condition`): JobSet is its
  own release here, so it can be pinned, placed and upgraded on its own;
- Trainer's built-in ClusterTrainingRuntimes are applied by a post-install hook Job (templates/runtimes/
  installer-job.yaml) that `apk add`s kubectl from the internet; the chart renders that Job, its ConfigMap and RBAC only
  when a runtime is enabled (`trainer.runtimes.enabled` in templates/runtimes/_runtimes.tpl). We enable none (we ship
  our own runtime), so no installer Job runs and the namespace needs no egress beyond the API;
- both controllers' pods meet the restricted Pod Security level (non-root, RuntimeDefault seccomp, no capabilities,
  no privilege escalation: values.yaml `controller.podSecurityContext`/`securityContext`, `manager.securityContext`);
- JobSet's values have `controller.replicas` and `controller.podDisruptionBudget`; Trainer's have `manager.replicas` but
  no PodDisruptionBudget (both controllers elect a leader; every replica serves the webhooks).
"""

from __future__ import annotations

from typing import Any, Final

import pulumi
import pulumi_kubernetes as k8s

from infra import versions
from infra.config.cluster import SYSTEM_POOL
from infra.k8s.namespaces import Namespaces
from infra.k8s.netpol import allow_spec, from_anywhere, network_policy, select, to_kube_api
from infra.k8s.observability import NAMESPACE as MONITORING_NAMESPACE
from infra.k8s.observability import from_prometheus
from workloads.common.vocab import POOL_LABEL

JOBSET_NAMESPACE: Final = "jobset-system"
"""The namespace of the JobSet controller (the one JobSet's install docs use)."""
TRAINER_NAMESPACE: Final = "kubeflow-system"
"""The namespace of the Trainer controller manager (the one Trainer's install docs use)."""
JOBSET_RELEASE: Final = "jobset"
"""JobSet's Helm release name (the chart names its objects after it: jobset-controller-manager, jobset-webhook-service)."""
TRAINER_RELEASE: Final = "kubeflow-trainer"
"""Trainer's Helm release name (the chart's objects are kubeflow-trainer-controller-manager and so on)."""
JOBSET_WEBHOOK_PORT: Final = 9443
"""The JobSet controller's admission webhook port (its webhook Service's 443 targets it)."""
JOBSET_METRICS_PORT: Final = 8443
"""The JobSet controller's metrics port (HTTPS), scraped by the chart's ServiceMonitor."""
TRAINER_WEBHOOK_PORT: Final = 9443
"""The Trainer manager's admission webhook port (its Service's `webhook-server` 443 targets it)."""
SYSTEM_POOL_REPLICAS: Final = 2
"""Controller replicas on the system node pool (EKS): a drained node never leaves the webhooks unanswered."""


def jobset_values(system_pool: bool, monitoring: bool) -> dict[str, Any]:
    """JobSet's chart values: its ServiceMonitor when monitored, and on the system node pool (EKS) two replicas behind
    a PDB."""
    values: dict[str, Any] = {"prometheus": {"enable": monitoring, "prometheusNamespace": MONITORING_NAMESPACE}}
    if system_pool:
        values["controller"] = {"nodeSelector": {POOL_LABEL: SYSTEM_POOL}, "replicas": SYSTEM_POOL_REPLICAS,
                                "podDisruptionBudget": {"enabled": True, "minAvailable": 1}}
    return values


def trainer_values(system_pool: bool) -> dict[str, Any]:
    """Trainer's chart values: JobSet not bundled (it is its own release), no built-in runtimes (so no installer Job),
    and on the system node pool (EKS) two replicas (the chart offers no PDB)."""
    values: dict[str, Any] = {"jobset": {"install": False}, "runtimes": {"defaultEnabled": False}}
    if system_pool:
        values["manager"] = {"nodeSelector": {POOL_LABEL: SYSTEM_POOL}, "replicas": SYSTEM_POOL_REPLICAS}
    return values


class Trainer(pulumi.ComponentResource):
    """JobSet in `jobset-system`, then Kubeflow Trainer v2 in `kubeflow-system`, each behind default-deny
    NetworkPolicies. Depending on the component waits for both releases (their CRDs and webhooks)."""

    jobset: k8s.helm.v3.Release
    """JobSet's Helm release; the JobSet CRD and webhooks are ready once it is."""
    release: k8s.helm.v3.Release
    """Trainer's Helm release (after JobSet's); TrainJob and the runtimes' CRDs and webhooks are ready once it is."""

    def __init__(self, name: str, *, system_pool: bool, monitoring: bool,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        """`system_pool` pins both controllers to the system node pool with two replicas (EKS); false leaves them
        unpinned, for clusters whose nodes carry no pool label (kind, minikube, k3d). `monitoring` (the stack runs
        Prometheus) adds JobSet's ServiceMonitor and admits Prometheus to its metrics port."""
        super().__init__("modelplane:training:Trainer", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        namespaces = Namespaces(f"{name}-namespaces", {JOBSET_NAMESPACE: "restricted", TRAINER_NAMESPACE: "restricted"},
                                opts=child).names
        self.jobset = k8s.helm.v3.Release(
            f"{name}-jobset", name=JOBSET_RELEASE, chart=versions.JOBSET_CHART, version=versions.JOBSET_VERSION,
            namespace=namespaces[JOBSET_NAMESPACE], values=jobset_values(system_pool, monitoring), opts=child)
        # The Trainer manager watches JobSets from its start: JobSet's CRD and webhook come first.
        self.release = k8s.helm.v3.Release(
            f"{name}-release", name=TRAINER_RELEASE, chart=versions.TRAINER_CHART, version=versions.TRAINER_VERSION,
            namespace=namespaces[TRAINER_NAMESPACE], values=trainer_values(system_pool),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.jobset]))
        # Each controller is the only pod of its namespace.
        jobset_ingress = [from_anywhere(JOBSET_WEBHOOK_PORT),
                          *([from_prometheus(JOBSET_METRICS_PORT)] if monitoring else [])]
        network_policy(f"{name}-jobset-netpol", policy_name="jobset-controller", namespace=namespaces[JOBSET_NAMESPACE],
                       spec=allow_spec(select(), ingress_rules=jobset_ingress, egress_rules=[to_kube_api()]),
                       opts=child)
        network_policy(f"{name}-trainer-netpol", policy_name="trainer-controller",
                       namespace=namespaces[TRAINER_NAMESPACE],
                       spec=allow_spec(select(), ingress_rules=[from_anywhere(TRAINER_WEBHOOK_PORT)],
                                       egress_rules=[to_kube_api()]),
                       opts=child)
        self.register_outputs({})
