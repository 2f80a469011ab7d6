"""Karpenter v1 facts the GPU platform builds on: labels, controller IAM and interruption events.

Everything here is data or a pure builder for `GpuNodePools` (infra/k8s/gpu.py); the values a stack may
set are in infra/config/karpenter.py. Sources, all from github.com/aws/karpenter-provider-aws at v1.14:
- NodePool and EC2NodeClass schemas: pkg/apis/crds/karpenter.sh_nodepools.yaml and
  pkg/apis/crds/karpenter.k8s.aws_ec2nodeclasses.yaml;
- well-known labels: website/content/en/v1.14/concepts/scheduling.md;
- controller IAM, the interruption queue and its EventBridge rules:
  website/content/en/v1.14/getting-started/getting-started-with-karpenter/cloudformation.yaml.
"""

from __future__ import annotations

import json
from typing import Any, Final

import pulumi

CAPACITY_TYPE_LABEL: Final = "karpenter.sh/capacity-type"
"""Well-known node label: spot or on-demand."""
INSTANCE_FAMILY_LABEL: Final = "karpenter.k8s.aws/instance-family"
"""Well-known node label: the EC2 instance family, e.g. g6."""
INSTANCE_CATEGORY_LABEL: Final = "karpenter.k8s.aws/instance-category"
"""Well-known node label: the EC2 instance category letter, e.g. c, m, r."""
INSTANCE_GENERATION_LABEL: Final = "karpenter.k8s.aws/instance-generation"
"""Well-known node label: the EC2 instance generation number, e.g. 6 for g6."""
GPU_COUNT_LABEL: Final = "karpenter.k8s.aws/instance-gpu-count"
"""Well-known node label: GPUs on the instance."""
GPU_MANUFACTURER_LABEL: Final = "karpenter.k8s.aws/instance-gpu-manufacturer"
"""Well-known node label: the GPU maker, e.g. nvidia."""
INSTANCE_TYPE_LABEL: Final = "node.kubernetes.io/instance-type"
"""Well-known node label: the EC2 instance type, e.g. g6.12xlarge."""
DISCOVERY_TAG: Final = "karpenter.sh/discovery"
"""Tag on the subnets and security group Karpenter launches nodes into (value: the cluster name)."""

NAMESPACE: Final = "kube-system"
"""Where the controller runs, as in the getting-started guide (KARPENTER_NAMESPACE)."""
SERVICE_ACCOUNT: Final = "karpenter"
"""The controller's service account: the chart's fullname when the release is named `karpenter`."""

INTERRUPTION_EVENTS: Final[dict[str, dict[str, list[str]]]] = {
    "scheduled-change": {"source": ["aws.health"], "detail-type": ["AWS Health Event"]},
    "spot-interruption": {"source": ["aws.ec2"], "detail-type": ["EC2 Spot Instance Interruption Warning"]},
    "rebalance": {"source": ["aws.ec2"], "detail-type": ["EC2 Instance Rebalance Recommendation"]},
    "instance-state-change": {"source": ["aws.ec2"], "detail-type": ["EC2 Instance State-change Notification"]},
    "capacity-reservation-interruption": {
        "source": ["aws.ec2"], "detail-type": ["EC2 Capacity Reservation Instance Interruption Warning"],
    },
}
"""EventBridge patterns forwarded to the interruption queue (the five rules of the v1.14 CloudFormation)."""
INTERRUPTION_RETENTION_SECONDS: Final = 300
"""Interruption messages are stale after 5 minutes (MessageRetentionPeriod in the CloudFormation)."""

LAUNCH_ACTIONS: Final = ("ec2:RunInstances", "ec2:CreateFleet")
"""Launch on shared inputs (images, subnets, security groups, ...)."""
CREATE_ACTIONS: Final = ("ec2:RunInstances", "ec2:CreateFleet", "ec2:CreateLaunchTemplate")
"""Create instances, fleets and launch templates, only when tagged for this cluster."""
TAG_ACTIONS: Final = ("ec2:CreateTags",)
"""Tag what the controller creates, and name its instances."""
DELETE_ACTIONS: Final = ("ec2:TerminateInstances", "ec2:DeleteLaunchTemplate")
"""Remove only instances and launch templates this cluster's NodePools own."""
PASS_ROLE_ACTIONS: Final = ("iam:PassRole",)
"""Hand the node role to EC2."""
INSTANCE_PROFILE_CREATE_ACTIONS: Final = ("iam:CreateInstanceProfile",)
"""Create the node instance profile, only when tagged for this cluster."""
INSTANCE_PROFILE_TAG_ACTIONS: Final = ("iam:TagInstanceProfile",)
"""Tag instance profiles this cluster owns."""
INSTANCE_PROFILE_MANAGE_ACTIONS: Final = (
    "iam:AddRoleToInstanceProfile", "iam:RemoveRoleFromInstanceProfile", "iam:DeleteInstanceProfile",
)
"""Attach and detach the node role, and delete profiles this cluster owns."""
INSTANCE_PROFILE_READ_ACTIONS: Final = ("iam:GetInstanceProfile",)
"""Read the instance profiles Karpenter manages (scoped to instance-profile ARNs)."""
INSTANCE_PROFILE_LIST_ACTIONS: Final = ("iam:ListInstanceProfiles",)
"""Listing has no resource-level permissions, so it is the one IAM action on "*"."""
EKS_ACTIONS: Final = ("eks:DescribeCluster",)
"""Discover the cluster endpoint and CA, on this cluster only."""
QUEUE_ACTIONS: Final = ("sqs:DeleteMessage", "sqs:GetQueueUrl", "sqs:ReceiveMessage")
"""Consume the interruption queue, on this queue only."""
DESCRIBE_ACTIONS: Final = (
    "ec2:DescribeCapacityReservations", "ec2:DescribeImages", "ec2:DescribeInstances", "ec2:DescribeInstanceStatus",
    "ec2:DescribeInstanceTypeOfferings", "ec2:DescribeInstanceTypes", "ec2:DescribeLaunchTemplates",
    "ec2:DescribePlacementGroups", "ec2:DescribeSecurityGroups", "ec2:DescribeSpotPriceHistory",
    "ec2:DescribeSubnets",
)
"""EC2 Describe* calls support no resource-level permissions; they are limited to the region by condition."""
SSM_ACTIONS: Final = ("ssm:GetParameter",)
"""Resolve AMI aliases from the public EKS and Bottlerocket SSM parameters."""
PRICING_ACTIONS: Final = ("pricing:GetProducts",)
"""On-demand prices for launch decisions (the Price List API has no resource-level permissions)."""


def partition_of(region: str) -> str:
    """The AWS partition a region belongs to."""
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


def _ec2_arns(partition: str, region: str, *kinds: str) -> list[str]:
    # Images and snapshots are owned by other accounts (AWS, Bottlerocket): their ARNs have no account.
    shared = {"image", "snapshot"}
    return [f"arn:{partition}:ec2:{region}:{'' if kind in shared else '*'}:{kind}/*" for kind in kinds]


def controller_statements(
    *, cluster_name: str, region: str, cluster_arn: pulumi.Input[str], node_role_arn: pulumi.Input[str],
    queue_arn: pulumi.Input[str],
) -> list[dict[str, Any]]:
    """The controller's IAM statements: NodeLifecycle, IAMIntegration, EKSIntegration, Interruption, ResourceDiscovery.

    Statement for statement the policies of the v1.14 getting-started CloudFormation; every
    mutating action is scoped by resource ARN and by the cluster's ownership tags.
    """
    partition = partition_of(region)
    owned = f"kubernetes.io/cluster/{cluster_name}"
    account = pulumi.Output.from_input(cluster_arn).apply(lambda arn: arn.split(":")[4])
    instance_profiles = pulumi.Output.concat(f"arn:{partition}:iam::", account, ":instance-profile/*")
    created = _ec2_arns(partition, region, "fleet", "instance", "volume", "network-interface", "launch-template",
                        "spot-instances-request")
    request_tags = {f"aws:RequestTag/{owned}": "owned", "aws:RequestTag/eks:eks-cluster-name": cluster_name}
    profile_tags = {f"aws:ResourceTag/{owned}": "owned", "aws:ResourceTag/topology.kubernetes.io/region": region}
    profile_request_tags = {**request_tags, "aws:RequestTag/topology.kubernetes.io/region": region}
    return [
        _allow("AllowScopedEC2InstanceAccessActions", LAUNCH_ACTIONS, _ec2_arns(
            partition, region, "image", "snapshot", "security-group", "subnet", "capacity-reservation",
            "placement-group")),
        _allow("AllowScopedEC2LaunchTemplateAccessActions", LAUNCH_ACTIONS,
               f"arn:{partition}:ec2:{region}:*:launch-template/*",
               {"StringEquals": {f"aws:ResourceTag/{owned}": "owned"},
                "StringLike": {"aws:ResourceTag/karpenter.sh/nodepool": "*"}}),
        _allow("AllowScopedEC2InstanceActionsWithTags", CREATE_ACTIONS, created,
               {"StringEquals": request_tags, "StringLike": {"aws:RequestTag/karpenter.sh/nodepool": "*"}}),
        _allow("AllowScopedResourceCreationTagging", TAG_ACTIONS, created,
               {"StringEquals": {**request_tags, "ec2:CreateAction": ["RunInstances", "CreateFleet",
                                                                      "CreateLaunchTemplate"]},
                "StringLike": {"aws:RequestTag/karpenter.sh/nodepool": "*"}}),
        _allow("AllowScopedResourceTagging", TAG_ACTIONS, f"arn:{partition}:ec2:{region}:*:instance/*",
               {"StringEquals": {f"aws:ResourceTag/{owned}": "owned"},
                "StringLike": {"aws:ResourceTag/karpenter.sh/nodepool": "*"},
                "StringEqualsIfExists": {"aws:RequestTag/eks:eks-cluster-name": cluster_name},
                "ForAllValues:StringEquals": {"aws:TagKeys": ["eks:eks-cluster-name", "karpenter.sh/nodeclaim",
                                                              "Name"]}}),
        _allow("AllowScopedDeletion", DELETE_ACTIONS, _ec2_arns(partition, region, "instance", "launch-template"),
               {"StringEquals": {f"aws:ResourceTag/{owned}": "owned"},
                "StringLike": {"aws:ResourceTag/karpenter.sh/nodepool": "*"}}),
        _allow("AllowPassingInstanceRole", PASS_ROLE_ACTIONS, node_role_arn,
               {"StringEquals": {"iam:PassedToService": ["ec2.amazonaws.com", "ec2.amazonaws.com.cn"]}}),
        _allow("AllowScopedInstanceProfileCreationActions", INSTANCE_PROFILE_CREATE_ACTIONS, instance_profiles,
               {"StringEquals": profile_request_tags,
                "StringLike": {"aws:RequestTag/karpenter.k8s.aws/ec2nodeclass": "*"}}),
        _allow("AllowScopedInstanceProfileTagActions", INSTANCE_PROFILE_TAG_ACTIONS, instance_profiles,
               {"StringEquals": {**profile_tags, **profile_request_tags},
                "StringLike": {"aws:ResourceTag/karpenter.k8s.aws/ec2nodeclass": "*",
                               "aws:RequestTag/karpenter.k8s.aws/ec2nodeclass": "*"}}),
        _allow("AllowScopedInstanceProfileActions", INSTANCE_PROFILE_MANAGE_ACTIONS, instance_profiles,
               {"StringEquals": profile_tags, "StringLike": {"aws:ResourceTag/karpenter.k8s.aws/ec2nodeclass": "*"}}),
        _allow("AllowAPIServerEndpointDiscovery", EKS_ACTIONS, cluster_arn),
        _allow("AllowInterruptionQueueActions", QUEUE_ACTIONS, queue_arn),
        _allow("AllowRegionalReadActions", DESCRIBE_ACTIONS, "*", {"StringEquals": {"aws:RequestedRegion": region}}),
        _allow("AllowSSMReadActions", SSM_ACTIONS, f"arn:{partition}:ssm:{region}::parameter/aws/service/*"),
        _allow("AllowPricingReadActions", PRICING_ACTIONS, "*"),
        _allow("AllowUnscopedInstanceProfileListAction", INSTANCE_PROFILE_LIST_ACTIONS, "*"),
        _allow("AllowInstanceProfileReadActions", INSTANCE_PROFILE_READ_ACTIONS, instance_profiles),
    ]


def _allow(sid: str, actions: tuple[str, ...], resource: pulumi.Input[str] | list[str],
           condition: dict[str, Any] | None = None) -> dict[str, Any]:
    statement: dict[str, Any] = {"Sid": sid, "Effect": "Allow", "Action": list(actions), "Resource": resource}
    if condition:
        statement["Condition"] = condition
    return statement


def interruption_queue_policy(queue_arn: str) -> str:
    """The queue policy: EventBridge (and SQS) may send; anything over plain HTTP is denied."""
    return json.dumps({
        "Version": "2012-10-17",
        "Id": "EC2InterruptionPolicy",
        "Statement": [
            {"Sid": "AllowEventBridgeSend", "Effect": "Allow",
             "Principal": {"Service": ["events.amazonaws.com", "sqs.amazonaws.com"]},
             "Action": "sqs:SendMessage", "Resource": queue_arn},
            {"Sid": "DenyHTTP", "Effect": "Deny", "Principal": "*", "Action": "sqs:*", "Resource": queue_arn,
             "Condition": {"Bool": {"aws:SecureTransport": "false"}}},
        ],
    }, sort_keys=True)
