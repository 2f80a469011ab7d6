"""`GpuNodePools`: Karpenter with interruption handling, GPU and CPU NodePools, the NVIDIA device plugin and DCGM.

No GPU node exists until a pod asks for one: every GPU NodePool starts empty and Karpenter
launches (and later removes) nodes for pending pods, within the pool's `nvidia.com/gpu` limit.
The component takes the `gpuPools`, `karpenter` and `addons` config sections as they are (their
rules are checked when the stack config is parsed); Karpenter facts (labels, patterns, IAM,
interruption events) live in infra/aws/karpenter.py.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Final

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from infra import versions
from infra.aws import karpenter
from infra.aws.iam import Grant, managed_policy_arn, service_trust_policy
from infra.aws.identity import WorkloadIdentity
from infra.config.cluster import SYSTEM_POOL
from infra.config.gpu import AddonsConfig, CpuPoolConfig, GpuPoolConfig, KarpenterConfig
from infra.config.karpenter import AmiFamily
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
"""AWS-managed policies on the Karpenter node role. As in infra/aws/cluster.py, no CNI policy: vpc-cni has its own
Pod Identity role (https://docs.aws.amazon.com/eks/latest/userguide/cni-iam-role.html)."""


class GpuNodePools(pulumi.ComponentResource):
    """Karpenter (controller, interruption queue, node role) with GPU and CPU NodePools, device plugin and DCGM.

    Takes the `gpuPools`, `karpenter` and `addons` sections, plus the cluster it runs on: `cluster_name` is the
    physical EKS name (discovery tags, IAM conditions, Karpenter settings), the cluster security group is tagged
    for discovery and given to every node, and `tags` go on everything Karpenter launches.
    """

    node_role_arn: pulumi.Output[str]
    """The IAM role of Karpenter-launched nodes."""
    controller_role_arn: pulumi.Output[str]
    """The controller's Pod Identity role."""
    interruption_queue_name: pulumi.Output[str]
    """The SQS queue Karpenter reads interruption events from."""
    gpu_pool_names: list[str]
    """GPU NodePool names (what a workload's gpuPool names)."""

    def __init__(self, name: str, pools: Sequence[GpuPoolConfig], karpenter_config: KarpenterConfig,
                 addons: AddonsConfig, *, cluster_name: str, cluster_arn: pulumi.Input[str],
                 cluster_endpoint: pulumi.Input[str], cluster_security_group_id: pulumi.Input[str], region: str,
                 tags: Mapping[str, str], opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("modelplane:gpu:GpuNodePools", name, None, opts)
        cpu_pool = karpenter_config.cpu_pool if karpenter_config.cpu_pool.enabled else None
        queue = self._interruption_queue(name)
        node_role, access_entry = self._node_role(name, cluster_name)
        discovery = aws.ec2.Tag(f"{name}-cluster-sg-discovery", resource_id=cluster_security_group_id,
                                key=karpenter.DISCOVERY_TAG, value=cluster_name,
                                opts=pulumi.ResourceOptions(parent=self))
        identity = WorkloadIdentity(
            f"{name}-controller", cluster_name=cluster_name, namespace=karpenter.NAMESPACE,
            service_account=karpenter.SERVICE_ACCOUNT,
            grants=[Grant(statements=tuple(karpenter.controller_statements(
                cluster_name=cluster_name, region=region, cluster_arn=cluster_arn,
                node_role_arn=node_role.arn, queue_arn=queue.arn)))],
            opts=pulumi.ResourceOptions(parent=self))
        controller = self._controller(name, karpenter_config, cluster_name, cluster_endpoint, queue,
                                      [identity, access_entry, discovery])
        after_controller = pulumi.ResourceOptions(parent=self, depends_on=[controller])
        for family, disk in sorted(_node_class_keys(pools, cpu_pool)):
            class_name = node_class_name(family, disk)
            k8s.apiextensions.CustomResource(
                f"{name}-{class_name}", api_version="karpenter.k8s.aws/v1", kind="EC2NodeClass",
                metadata={"name": class_name}, opts=after_controller,
                spec=node_class_spec(family=family, disk_size_gb=disk, role_name=node_role.name,
                                     cluster_name=cluster_name, tags=tags))
        specs = [(p.name, gpu_node_pool_spec(p)) for p in pools]
        if cpu_pool is not None:
            specs.append((cpu_pool.name, cpu_node_pool_spec(cpu_pool)))
        for pool_name, spec in specs:
            k8s.apiextensions.CustomResource(f"{name}-pool-{pool_name}", api_version="karpenter.sh/v1", kind="NodePool",
                                             metadata={"name": pool_name}, spec=spec, opts=after_controller)
        if addons.nvidia_device_plugin and any(p.ami_family == "al2023" for p in pools):
            self._device_plugin(name, pools)
        if addons.dcgm_exporter and pools:
            self._dcgm_exporter(name, addons.dcgm_scrape_interval)
        self.node_role_arn = node_role.arn
        self.controller_role_arn = identity.role_arn
        self.interruption_queue_name = queue.name
        self.gpu_pool_names = [p.name for p in pools]
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

    def _node_role(self, name: str, cluster_name: str) -> tuple[aws.iam.Role, aws.eks.AccessEntry]:
        child = pulumi.ResourceOptions(parent=self)
        role = aws.iam.Role(f"{name}-node", assume_role_policy=service_trust_policy("ec2.amazonaws.com"),
                            description=f"Karpenter nodes of {cluster_name}", opts=child)
        attachments = [aws.iam.RolePolicyAttachment(f"{name}-node-{policy}", role=role.name,
                                                    policy_arn=managed_policy_arn(policy), opts=child)
                       for policy in NODE_POLICIES]
        # EC2_LINUX entries put the role in system:nodes (also for Bottlerocket); no groups or policies allowed.
        entry = aws.eks.AccessEntry(f"{name}-node", cluster_name=cluster_name, principal_arn=role.arn,
                                    type="EC2_LINUX", opts=pulumi.ResourceOptions(parent=self, depends_on=attachments))
        return role, entry

    def _controller(self, name: str, config: KarpenterConfig, cluster_name: str, cluster_endpoint: pulumi.Input[str],
                    queue: aws.sqs.Queue, depends_on: Sequence[pulumi.Resource]) -> k8s.helm.v3.Release:
        # CRDs from the karpenter-crd chart: Helm never upgrades a chart's crds/ folder, so the controller
        # chart skips them (website/content/en/v1.14/upgrading/upgrade-guide.md, "CRD Upgrades").
        crds = k8s.helm.v3.Release(f"{name}-karpenter-crd", name="karpenter-crd", chart=versions.KARPENTER_CRD_CHART,
                                   version=versions.KARPENTER_VERSION, namespace=karpenter.NAMESPACE,
                                   opts=pulumi.ResourceOptions(parent=self))
        resources = {"cpu": config.cpu, "memory": config.memory}
        return k8s.helm.v3.Release(
            f"{name}-karpenter", name="karpenter", chart=versions.KARPENTER_CHART, version=versions.KARPENTER_VERSION,
            namespace=karpenter.NAMESPACE, skip_crds=True,
            values={
                "replicas": config.replicas,
                "serviceAccount": {"name": karpenter.SERVICE_ACCOUNT},
                # The chart's default affinity already keeps the controller off Karpenter nodes.
                "nodeSelector": {"kubernetes.io/os": "linux", POOL_LABEL: SYSTEM_POOL},
                "controller": {"resources": {"requests": resources, "limits": resources}},
                "settings": {"clusterName": cluster_name, "clusterEndpoint": cluster_endpoint,
                             "interruptionQueue": queue.name},
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=[crds, *depends_on]),
        )

    def _device_plugin(self, name: str, pools: Sequence[GpuPoolConfig]) -> None:
        k8s.helm.v3.Release(
            f"{name}-nvidia-device-plugin", name="nvidia-device-plugin", chart=versions.NVIDIA_DEVICE_PLUGIN_CHART,
            version=versions.NVIDIA_DEVICE_PLUGIN_VERSION, namespace="kube-system",
            values=device_plugin_values(pools),
            repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=versions.NVIDIA_DEVICE_PLUGIN_REPO),
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _dcgm_exporter(self, name: str, scrape_interval: str) -> None:
        k8s.helm.v3.Release(
            f"{name}-dcgm-exporter", name="dcgm-exporter", chart=versions.DCGM_EXPORTER_CHART,
            version=versions.DCGM_EXPORTER_VERSION, namespace="kube-system",
            repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=versions.DCGM_EXPORTER_REPO),
            values=dcgm_exporter_values(scrape_interval),
            opts=pulumi.ResourceOptions(parent=self),
        )


def _node_class_keys(pools: Sequence[GpuPoolConfig], cpu_pool: CpuPoolConfig | None) -> set[tuple[AmiFamily, int]]:
    """One EC2NodeClass per (AMI family, disk size) in use."""
    keys: set[tuple[AmiFamily, int]] = {(p.ami_family, p.disk_size_gb) for p in pools}
    if cpu_pool is not None:
        keys.add(("al2023", cpu_pool.disk_size_gb))
    return keys
