"""`Kueue`: the Kueue job-queueing controller from its pinned Helm chart, configured for batch training jobs.

Facts read from github.com/kubernetes-sigs/kueue at the tag of `versions.KUEUE_VERSION` (v0.19.2):
- the chart's `managerConfig.controllerManagerConfigYaml` is the whole Configuration the manager reads
  (charts/kueue/templates/manager/manager-config.yaml renders it, adding only `internalCertManagement`), so ours
  repeats the chart's defaults the Deployment relies on (health probes on 8081, metrics 8443, webhook 9443);
- the Configuration is `config.kueue.x-k8s.io/v1beta2` (apis/config/v1beta2/configuration_types.go): there,
  `waitForPodsReady` has no `enable` field (v1beta1's); setting the section turns all-or-nothing admission on;
- the integration names are the `FrameworkName` constants of pkg/controller/jobs/*;
- the queue label is `QueueLabel` of pkg/controller/constants/constants.go;
- the manager pod serves the admission webhooks on 9443 and the visibility API (an APIService the chart always
  registers, templates/visibility/) on 8082; both are called by the API server, from addresses a NetworkPolicy
  cannot name (charts/kueue/templates/manager/manager.yaml `ports`);
- the chart registers the job webhooks with `failurePolicy: Fail` over every namespace but kube-system and its own
  unless the Configuration sets `managedJobsNamespaceSelector` (a LabelSelector, configuration_types.go), which then
  becomes each webhook's `namespaceSelector` (charts/kueue/templates/webhook/manifests.yaml);
- `enablePrometheus` adds the manager's ServiceMonitor (templates/prometheus/monitor.yaml), and
  `controllerManager.replicas` / `controllerManager.podDisruptionBudget` its replica count and PDB (values.yaml).
"""

from __future__ import annotations

from typing import Any, Final

import pulumi
import pulumi_kubernetes as k8s
import yaml

from infra import versions
from infra.config.cluster import SYSTEM_POOL
from infra.k8s.namespaces import Namespaces
from infra.k8s.netpol import allow_spec, from_anywhere, network_policy, select, to_kube_api
from infra.k8s.observability import from_prometheus
from workloads.common.vocab import POOL_LABEL, TEAM_LABEL

KUEUE_NAMESPACE: Final = "kueue-system"
"""The namespace of Kueue's controller (the one Kueue's install docs use)."""
QUEUE_LABEL: Final = "kueue.x-k8s.io/queue-name"
"""The label naming the LocalQueue a job is submitted to (Kueue's `constants.QueueLabel`)."""
API_VERSION: Final = "kueue.x-k8s.io/v1beta2"
"""The apiVersion of Kueue's ResourceFlavor, ClusterQueue, LocalQueue and Cohort at the pinned release."""
RELEASE: Final = "kueue"
"""The Helm release name (the chart prefixes its objects with it: kueue-controller-manager, kueue-webhook-service)."""
WEBHOOK_PORT: Final = 9443
"""The manager's admission webhook port (its Service's 443 targets it)."""
VISIBILITY_PORT: Final = 8082
"""The manager's visibility API server port, behind the chart's APIService."""
METRICS_PORT: Final = 8443
"""The manager's metrics port (HTTPS)."""
HEALTH_PORT: Final = 8081
"""The manager's health probe port (the chart's Deployment probes /healthz and /readyz on it)."""
FRAMEWORKS: Final = ("batch/job", "jobset.x-k8s.io/jobset", "trainer.kubeflow.org/trainjob")
"""The job kinds Kueue manages: plain Jobs, JobSets (our TensorFlow jobs) and Trainer v2 TrainJobs (our PyTorch jobs).
Kueue defers a framework until its CRD is installed (pkg/controller/jobframework/setup.go), so the order in which
Kueue and JobSet/Trainer are installed does not matter."""
PODS_READY_TIMEOUT: Final = "10m"
"""How long an admitted job has for all its pods to be Ready before Kueue evicts and requeues it: Karpenter
launching a GPU node and pulling a multi-GiB training image fits in it."""
REQUEUE_BACKOFF: Final = {"backoffBaseSeconds": 60, "backoffMaxSeconds": 1800, "backoffLimitCount": 5}
"""Requeue delays after a pods-ready timeout (60 s doubling to 30 min); after 5 requeues the workload is deactivated
instead of cycling for ever."""


def manager_config() -> dict[str, Any]:
    """The manager's Configuration: the chart's defaults, all-or-nothing admission, and our integrations."""
    return {
        "apiVersion": "config.kueue.x-k8s.io/v1beta2",
        "kind": "Configuration",
        # The chart's defaults (charts/kueue/values.yaml), which replacing the string would otherwise drop.
        "health": {"healthProbeBindAddress": f":{HEALTH_PORT}"},
        "metrics": {"bindAddress": f":{METRICS_PORT}"},
        "webhook": {"port": WEBHOOK_PORT},
        "leaderElection": {"leaderElect": True, "resourceName": "c1f6bfd2.kueue.x-k8s.io"},
        "controller": {"groupKindConcurrency": {
            "Job.batch": 5, "Pod": 5, "Workload.kueue.x-k8s.io": 10, "LocalQueue.kueue.x-k8s.io": 5,
            "ClusterQueue.kueue.x-k8s.io": 5, "ResourceFlavor.kueue.x-k8s.io": 1}},
        "clientConnection": {"qps": 300, "burst": 500},
        # Only jobs that name a queue are Kueue's; the policy check rejects GPU jobs without one.
        "manageJobsWithoutQueueName": False,
        # Only team namespaces' jobs go through Kueue's webhooks: with the chart's default selector (all but
        # kube-system) no Job, JobSet or TrainJob could be created anywhere while the manager is down.
        "managedJobsNamespaceSelector": {"matchExpressions": [{"key": TEAM_LABEL, "operator": "Exists"}]},
        # A distributed job holds no GPUs while part of it is Pending: until every pod of the admitted job is Ready,
        # nothing else is admitted (blockAdmission), and a job not Ready in time is evicted and requeued.
        "waitForPodsReady": {"timeout": PODS_READY_TIMEOUT, "blockAdmission": True,
                             "requeuingStrategy": {"timestamp": "Eviction", **REQUEUE_BACKOFF}},
        "integrations": {"frameworks": list(FRAMEWORKS)},
    }


def kueue_values(system_pool: bool, monitoring: bool) -> dict[str, Any]:
    """The chart's values: our manager Configuration, its ServiceMonitor when monitored, and on the system node pool
    (EKS) two replicas behind a PDB, so a drained node never leaves the team namespaces' webhooks unanswered."""
    values: dict[str, Any] = {
        "enablePrometheus": monitoring,
        "managerConfig": {"controllerManagerConfigYaml": yaml.safe_dump(manager_config(), sort_keys=False)}}
    if system_pool:
        values["controllerManager"] = {"nodeSelector": {POOL_LABEL: SYSTEM_POOL}, "replicas": 2,
                                       "podDisruptionBudget": {"enabled": True, "minAvailable": 1}}
    return values


class Kueue(pulumi.ComponentResource):
    """Kueue's controller, CRDs and webhooks in `kueue-system`, behind default-deny NetworkPolicies."""

    release: k8s.helm.v3.Release
    """The Helm release; Kueue's CRDs and webhooks are ready once it is (queue objects depend on it)."""

    def __init__(self, name: str, *, system_pool: bool, monitoring: bool,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        """`system_pool` pins the controller to the system node pool (EKS); false leaves it unpinned, for clusters
        whose nodes carry no pool label (kind, minikube, k3d). `monitoring` (the stack runs Prometheus) adds the
        chart's ServiceMonitor and admits Prometheus to the metrics port."""
        super().__init__("modelplane:kueue:Kueue", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        # The manager's pod meets the restricted level (non-root, RuntimeDefault seccomp, no capabilities).
        namespace = Namespaces(f"{name}-namespace", {KUEUE_NAMESPACE: "restricted"}, opts=child).names[KUEUE_NAMESPACE]
        self.release = k8s.helm.v3.Release(
            f"{name}-release", name=RELEASE, chart=versions.KUEUE_CHART, version=versions.KUEUE_VERSION,
            namespace=namespace, values=kueue_values(system_pool, monitoring), opts=child)
        # The manager is the only pod of the namespace (KueueViz is off).
        ingress = [from_anywhere(WEBHOOK_PORT, VISIBILITY_PORT), *([from_prometheus(METRICS_PORT)] if monitoring else [])]
        network_policy(f"{name}-controller-netpol", policy_name="kueue-controller", namespace=namespace, opts=child,
                       spec=allow_spec(select(), ingress_rules=ingress, egress_rules=[to_kube_api()]))
        self.register_outputs({})
