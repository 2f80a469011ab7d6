"""`GpuNodePools`: Karpenter with interruption handling, GPU and CPU NodePools, the NVIDIA device plugin and DCGM.

No GPU node exists until a pod asks for one: every GPU NodePool starts empty and Karpenter
launches (and later removes) nodes for pending pods, within the pool's `nvidia.com/gpu` limit.
Karpenter facts (labels, patterns, IAM, interruption events) live in infra/karpenter.py.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from infra import versions
from infra.aws import karpenter
from infra.aws.iam import Grant, managed_policy_arn, service_trust_policy
from infra.aws.identity import WorkloadIdentity, WorkloadIdentityArgs
from infra.config.errors import raise_if_invalid
from infra.k8s.gpu_specs import (
    cpu_node_pool_spec,
    dcgm_exporter_values,
    device_plugin_values,
    gpu_node_pool_spec,
    node_class_name,
    node_class_spec,
)
from workloads.common.vocab import POOL_LABEL

NODE_POLICIES: Final = ("AmazonEKSWorkerNodePolicy", "AmazonEC2ContainerRegistryPullOnly",
                        "AmazonSSMManagedInstanceCore")
"""AWS-managed policies on the Karpenter node role. As in infra/cluster.py, no CNI policy: vpc-cni has its own
Pod Identity role (https://docs.aws.amazon.com/eks/latest/userguide/cni-iam-role.html)."""
AmiFamily = Literal["al2023", "bottlerocket"]
ConsolidationPolicy = Literal["WhenEmpty", "WhenEmptyOrUnderutilized"]


@dataclass(frozen=True, kw_only=True)
class GpuPoolSpec:
    """One GPU NodePool."""

    name: str
    """Pool name: the NodePool's name and its nodes' modelplane.io/pool and modelplane.io/gpu-pool labels."""
    gpu_limit: int
    """Total nvidia.com/gpu across the pool's nodes. Valid: > 0 and >= min_gpus_per_node."""
    instance_families: Sequence[str] = ()
    """EC2 instance families (e.g. g6). Set this or instance_types."""
    instance_types: Sequence[str] = ()
    """EC2 instance types (e.g. g6.12xlarge). Set this or instance_families."""
    capacity_types: Sequence[str] = ("on-demand",)
    """Defaults to on-demand. Valid values: spot, on-demand."""
    min_gpus_per_node: int = 1
    """Fewest GPUs per node. Defaults to 1."""
    max_gpus_per_node: int = 8
    """Most GPUs per node. Defaults to 8."""
    purpose: Literal["training", "inference"] = "training"
    """What runs here (node label modelplane.io/purpose). Defaults to training."""
    cpu_limit: int | None = None
    """Total vCPUs of the pool. Defaults to none."""
    memory_limit: str | None = None
    """Total memory of the pool, e.g. 4Ti. Defaults to none."""
    ami_family: AmiFamily = "al2023"
    """AMI family (Karpenter picks its NVIDIA variant). Defaults to al2023. Valid values: al2023, bottlerocket."""
    disk_size_gb: int = 200
    """Encrypted gp3 volume for images and containers, in GiB. Defaults to 200."""
    consolidation_policy: ConsolidationPolicy = "WhenEmpty"
    """Defaults to WhenEmpty. Valid values: WhenEmpty, WhenEmptyOrUnderutilized."""
    consolidate_after: str = "10m"
    """Defaults to 10m."""
    expire_after: str = "720h"
    """Maximum node lifetime. Defaults to 720h."""
    termination_grace_period: str = "24h"
    """How long a draining node waits on do-not-disrupt pods. Defaults to 24h."""
    disruption_budget: str = "10%"
    """Nodes that may be voluntarily disrupted at once. Defaults to 10%."""
    weight: int = 10
    """Priority among pools. Defaults to 10. Valid: 1 to 100."""
    time_slicing_replicas: int | None = None
    """Pods sharing each GPU (device-plugin time-slicing; al2023 only). Defaults to none."""


@dataclass(frozen=True, kw_only=True)
class CpuPoolSpec:
    """The NodePool for workloads that need no GPU."""

    name: str = "cpu"
    """Pool name (modelplane.io/pool label). Defaults to cpu."""
    instance_categories: Sequence[str] = ("c", "m", "r")
    """EC2 instance categories. Defaults to c, m, r."""
    min_generation: int = 5
    """Oldest instance generation. Defaults to 5."""
    capacity_types: Sequence[str] = ("on-demand",)
    """Defaults to on-demand. Valid values: spot, on-demand."""
    cpu_limit: int = 64
    """Total vCPUs. Defaults to 64."""
    memory_limit: str = "256Gi"
    """Total memory. Defaults to 256Gi."""
    disk_size_gb: int = 50
    """Encrypted gp3 root volume in GiB. Defaults to 50."""
    consolidation_policy: ConsolidationPolicy = "WhenEmptyOrUnderutilized"
    """Defaults to WhenEmptyOrUnderutilized."""
    consolidate_after: str = "1m"
    """Defaults to 1m."""
    expire_after: str = "720h"
    """Defaults to 720h."""


@dataclass(frozen=True, kw_only=True)
class GpuNodePoolsArgs:
    """Inputs of `GpuNodePools`."""

    cluster_name: str
    """Physical EKS cluster name (discovery tags, IAM conditions and Karpenter settings use it)."""
    cluster_arn: pulumi.Input[str]
    """The EKS cluster ARN."""
    cluster_endpoint: pulumi.Input[str]
    """The API server endpoint (Karpenter settings.clusterEndpoint)."""
    cluster_security_group_id: pulumi.Input[str]
    """The EKS cluster security group; tagged for Karpenter discovery and given to every node."""
    region: str
    """AWS region."""
    gpu_pools: Sequence[GpuPoolSpec] = ()
    """GPU NodePools. Defaults to none."""
    cpu_pool: CpuPoolSpec | None = field(default_factory=CpuPoolSpec)
    """The CPU NodePool, or None for none. Defaults to CpuPoolSpec()."""
    system_pool: str = "system"
    """Managed node group that runs the controller. Defaults to system."""
    controller_replicas: int = 2
    """Karpenter controller replicas. Defaults to 2."""
    controller_cpu: str = "1"
    """Controller CPU request and limit. Defaults to 1."""
    controller_memory: str = "1Gi"
    """Controller memory request and limit. Defaults to 1Gi."""
    device_plugin: bool = True
    """Install the NVIDIA device plugin on al2023 GPU nodes. Defaults to true."""
    dcgm_exporter: bool = True
    """Install the DCGM exporter on GPU nodes, with a ServiceMonitor. Defaults to true."""
    dcgm_scrape_interval: str = "15s"
    """DCGM ServiceMonitor interval. Defaults to 15s."""
    service_monitor_labels: Mapping[str, str] = field(default_factory=dict)
    """Extra labels on the DCGM ServiceMonitor (to match a Prometheus selector). Defaults to none."""
    monitoring_crds: Sequence[pulumi.Resource] = ()
    """Resources that install the monitoring.coreos.com CRDs; the DCGM release waits for them. Defaults to none."""
    tags: Mapping[str, str] = field(default_factory=dict)
    """Tags Karpenter puts on the instances, volumes and launch templates it creates. Defaults to none."""


class GpuNodePools(pulumi.ComponentResource):
    """Karpenter (controller, interruption queue, node role) with GPU and CPU NodePools, device plugin and DCGM."""

    node_role_arn: pulumi.Output[str]
    """The IAM role of Karpenter-launched nodes."""
    controller_role_arn: pulumi.Output[str]
    """The controller's Pod Identity role."""
    interruption_queue_name: pulumi.Output[str]
    """The SQS queue Karpenter reads interruption events from."""
    gpu_pool_names: list[str]
    """GPU NodePool names (what a workload's gpuPool names)."""
    cpu_pool_name: str | None
    """The CPU NodePool name, or None."""

    def __init__(self, name: str, args: GpuNodePoolsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("modelplane:gpu:GpuNodePools", name, None, opts)
        _validate(args)
        queue = self._interruption_queue(name)
        node_role, access_entry = self._node_role(name, args)
        discovery = aws.ec2.Tag(f"{name}-cluster-sg-discovery", resource_id=args.cluster_security_group_id,
                                key=karpenter.DISCOVERY_TAG, value=args.cluster_name,
                                opts=pulumi.ResourceOptions(parent=self))
        identity = WorkloadIdentity(f"{name}-controller", WorkloadIdentityArgs(
            cluster_name=args.cluster_name, namespace=karpenter.NAMESPACE, service_account=karpenter.SERVICE_ACCOUNT,
            grants=[Grant(statements=tuple(karpenter.controller_statements(
                cluster_name=args.cluster_name, region=args.region, cluster_arn=args.cluster_arn,
                node_role_arn=node_role.arn, queue_arn=queue.arn)))],
        ), opts=pulumi.ResourceOptions(parent=self))
        controller = self._controller(name, args, queue, [identity, access_entry, discovery])
        after_controller = pulumi.ResourceOptions(parent=self, depends_on=[controller])
        for family, disk in sorted(_node_class_keys(args)):
            class_name = node_class_name(family, disk)
            k8s.apiextensions.CustomResource(
                f"{name}-{class_name}", api_version="karpenter.k8s.aws/v1", kind="EC2NodeClass",
                metadata={"name": class_name}, opts=after_controller,
                spec=node_class_spec(family=family, disk_size_gb=disk, role_name=node_role.name,
                                     cluster_name=args.cluster_name, tags=args.tags))
        pools = [(p.name, gpu_node_pool_spec(p)) for p in args.gpu_pools]
        if args.cpu_pool is not None:
            pools.append((args.cpu_pool.name, cpu_node_pool_spec(args.cpu_pool)))
        for pool_name, spec in pools:
            k8s.apiextensions.CustomResource(f"{name}-pool-{pool_name}", api_version="karpenter.sh/v1", kind="NodePool",
                                             metadata={"name": pool_name}, spec=spec, opts=after_controller)
        if args.device_plugin and any(p.ami_family == "al2023" for p in args.gpu_pools):
            self._device_plugin(name, args)
        if args.dcgm_exporter and args.gpu_pools:
            self._dcgm_exporter(name, args)
        self.node_role_arn = node_role.arn
        self.controller_role_arn = identity.role_arn
        self.interruption_queue_name = queue.name
        self.gpu_pool_names = [p.name for p in args.gpu_pools]
        self.cpu_pool_name = args.cpu_pool.name if args.cpu_pool else None
        self.register_outputs({"node_role_arn": self.node_role_arn, "controller_role_arn": self.controller_role_arn,
                               "interruption_queue_name": self.interruption_queue_name})

    def _interruption_queue(self, name: str) -> aws.sqs.Queue:
        child = pulumi.ResourceOptions(parent=self)
        queue = aws.sqs.Queue(f"{name}-interruption", message_retention_seconds=karpenter.INTERRUPTION_RETENTION_SECONDS,
                              sqs_managed_sse_enabled=True, opts=child)
        aws.sqs.QueuePolicy(f"{name}-interruption", queue_url=queue.url,
                            policy=queue.arn.apply(karpenter.interruption_queue_policy), opts=child)
        for event, pattern in karpenter.INTERRUPTION_EVENTS.items():
            rule = aws.cloudwatch.EventRule(f"{name}-{event}", description=f"Karpenter interruption: {event}",
                                            event_pattern=json.dumps(pattern, sort_keys=True), opts=child)
            aws.cloudwatch.EventTarget(f"{name}-{event}", rule=rule.name, arn=queue.arn,
                                       target_id="KarpenterInterruptionQueueTarget", opts=child)
        return queue

    def _node_role(self, name: str, args: GpuNodePoolsArgs) -> tuple[aws.iam.Role, aws.eks.AccessEntry]:
        child = pulumi.ResourceOptions(parent=self)
        role = aws.iam.Role(f"{name}-node", assume_role_policy=service_trust_policy("ec2.amazonaws.com"),
                            description=f"Karpenter nodes of {args.cluster_name}", opts=child)
        attachments = [aws.iam.RolePolicyAttachment(f"{name}-node-{policy}", role=role.name,
                                                    policy_arn=managed_policy_arn(policy), opts=child)
                       for policy in NODE_POLICIES]
        # EC2_LINUX entries put the role in system:nodes (also for Bottlerocket); no groups or policies allowed.
        entry = aws.eks.AccessEntry(f"{name}-node", cluster_name=args.cluster_name, principal_arn=role.arn,
                                    type="EC2_LINUX", opts=pulumi.ResourceOptions(parent=self, depends_on=attachments))
        return role, entry

    def _controller(self, name: str, args: GpuNodePoolsArgs, queue: aws.sqs.Queue,
                    depends_on: Sequence[pulumi.Resource]) -> k8s.helm.v3.Release:
        # CRDs from the karpenter-crd chart: Helm never upgrades a chart's crds/ folder, so the controller
        # chart skips them (website/content/en/v1.14/upgrading/upgrade-guide.md, "CRD Upgrades").
        crds = k8s.helm.v3.Release(f"{name}-karpenter-crd", name="karpenter-crd", chart=versions.KARPENTER_CRD_CHART,
                                   version=versions.KARPENTER_VERSION, namespace=karpenter.NAMESPACE,
                                   opts=pulumi.ResourceOptions(parent=self))
        resources = {"cpu": args.controller_cpu, "memory": args.controller_memory}
        return k8s.helm.v3.Release(
            f"{name}-karpenter", name="karpenter", chart=versions.KARPENTER_CHART, version=versions.KARPENTER_VERSION,
            namespace=karpenter.NAMESPACE, skip_crds=True,
            values={
                "replicas": args.controller_replicas,
                "serviceAccount": {"name": karpenter.SERVICE_ACCOUNT},
                # The chart's default affinity already keeps the controller off Karpenter nodes.
                "nodeSelector": {"kubernetes.io/os": "linux", POOL_LABEL: args.system_pool},
                "controller": {"resources": {"requests": resources, "limits": resources}},
                "settings": {"clusterName": args.cluster_name, "clusterEndpoint": args.cluster_endpoint,
                             "interruptionQueue": queue.name},
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=[crds, *depends_on]),
        )

    def _device_plugin(self, name: str, args: GpuNodePoolsArgs) -> None:
        k8s.helm.v3.Release(
            f"{name}-nvidia-device-plugin", name="nvidia-device-plugin", chart=versions.NVIDIA_DEVICE_PLUGIN_CHART,
            version=versions.NVIDIA_DEVICE_PLUGIN_VERSION, namespace="kube-system",
            values=device_plugin_values(args.gpu_pools),
            repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=versions.NVIDIA_DEVICE_PLUGIN_REPO),
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _dcgm_exporter(self, name: str, args: GpuNodePoolsArgs) -> None:
        k8s.helm.v3.Release(
            f"{name}-dcgm-exporter", name="dcgm-exporter", chart=versions.DCGM_EXPORTER_CHART,
            version=versions.DCGM_EXPORTER_VERSION, namespace="kube-system",
            repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=versions.DCGM_EXPORTER_REPO),
            values=dcgm_exporter_values(scrape_interval=args.dcgm_scrape_interval,
                                        service_monitor_labels=args.service_monitor_labels),
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(args.monitoring_crds)),
        )


def _node_class_keys(args: GpuNodePoolsArgs) -> set[tuple[AmiFamily, int]]:
    """One EC2NodeClass per (AMI family, disk size) in use."""
    keys: set[tuple[AmiFamily, int]] = {(p.ami_family, p.disk_size_gb) for p in args.gpu_pools}
    if args.cpu_pool is not None:
        keys.add(("al2023", args.cpu_pool.disk_size_gb))
    return keys


def _pool_problems(key: str, pool: GpuPoolSpec) -> list[tuple[str, str]]:
    problems = [(f"{key}.capacity_types", f"must be one of {', '.join(karpenter.CAPACITY_TYPES)} (got {value!r})")
                for value in pool.capacity_types if value not in karpenter.CAPACITY_TYPES]
    if not pool.capacity_types:
        problems.append((f"{key}.capacity_types", "must not be empty"))
    if bool(pool.instance_families) == bool(pool.instance_types):
        problems.append((f"{key}.instance_families", "set exactly one of instance_families or instance_types"))
    if pool.gpu_limit <= 0:
        problems.append((f"{key}.gpu_limit", f"must be > 0 (got {pool.gpu_limit})"))
    if not 1 <= pool.min_gpus_per_node <= pool.max_gpus_per_node:
        problems.append((f"{key}.max_gpus_per_node", f"must be >= min_gpus_per_node >= 1 "
                                                     f"(got {pool.min_gpus_per_node}..{pool.max_gpus_per_node})"))
    if pool.ami_family not in karpenter.AMI_FAMILIES:
        problems.append((f"{key}.ami_family", f"must be one of {', '.join(karpenter.AMI_FAMILIES)}"))
    for attr in ("consolidate_after", "expire_after"):
        if not karpenter.DURATION.match(getattr(pool, attr)):
            problems.append((f"{key}.{attr}", f"must be a duration like 10m or Never (got {getattr(pool, attr)!r})"))
    if not karpenter.GRACE_PERIOD.match(pool.termination_grace_period):
        problems.append((f"{key}.termination_grace_period", f"must be a duration like 24h "
                                                            f"(got {pool.termination_grace_period!r})"))
    if not karpenter.BUDGET_NODES.match(pool.disruption_budget):
        problems.append((f"{key}.disruption_budget", f"must be a count or a percentage (got {pool.disruption_budget!r})"))
    if not 1 <= pool.weight <= 100:
        problems.append((f"{key}.weight", f"must be 1 to 100 (got {pool.weight})"))
    if pool.time_slicing_replicas is not None and pool.ami_family != "al2023":
        problems.append((f"{key}.time_slicing_replicas", "is only supported on al2023 pools"))
    return problems


def _validate(args: GpuNodePoolsArgs) -> None:
    problems: list[tuple[str, str]] = []
    seen = {args.system_pool}
    if args.cpu_pool is not None:
        seen.add(args.cpu_pool.name)
        bad = [value for value in args.cpu_pool.capacity_types if value not in karpenter.CAPACITY_TYPES]
        if bad or not args.cpu_pool.capacity_types:
            problems.append(("cpu_pool.capacity_types", f"must be non-empty and within "
                                                        f"{', '.join(karpenter.CAPACITY_TYPES)} (got {bad or []})"))
    for i, pool in enumerate(args.gpu_pools):
        if pool.name in seen:
            problems.append((f"gpu_pools[{i}].name", f"duplicate pool name {pool.name!r}"))
        seen.add(pool.name)
        problems += _pool_problems(f"gpu_pools[{i}]", pool)
    if args.controller_replicas < 1:
        problems.append(("controller_replicas", f"must be >= 1 (got {args.controller_replicas})"))
    raise_if_invalid("GpuNodePools", problems)
