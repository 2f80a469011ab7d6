"""Every pinned version in one place: Kubernetes, charts, CRDs and images.

Bumping a version is a one-line diff here, reviewed in the PR's preview diff.
"""

from typing import Final

EKS_VERSIONS: Final = ("1.34", "1.35", "1.36")
"""EKS Kubernetes versions in standard support (https://docs.aws.amazon.com/eks/latest/userguide/kubernetes-versions.html)."""
EKS_DEFAULT_VERSION: Final = "1.35"
"""The default cluster version when a stack does not pin one."""

EKS_ADDONS: Final = ("vpc-cni", "coredns", "kube-proxy", "aws-ebs-csi-driver", "eks-pod-identity-agent")
"""Managed add-ons every cluster gets. Their versions resolve to AWS's default for the cluster version."""

SYSTEM_AMI_TYPE: Final = "AL2023_x86_64_STANDARD"
"""AMI type of the system managed node group (Amazon Linux 2023)."""
