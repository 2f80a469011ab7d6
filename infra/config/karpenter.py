"""Karpenter v1 values a stack may set in its GPU and CPU pools, and their patterns.

From github.com/aws/karpenter-provider-aws at v1.14: the NodePool and EC2NodeClass schemas
(pkg/apis/crds/karpenter.sh_nodepools.yaml, pkg/apis/crds/karpenter.k8s.aws_ec2nodeclasses.yaml)
and the AMI families with an NVIDIA variant (pkg/providers/amifamily).
"""

from __future__ import annotations

import re
from typing import Final, Literal

CAPACITY_TYPES: Final = ("spot", "on-demand")
"""Values of `karpenter.sh/capacity-type` a pool may ask for (`reserved` needs capacity reservations we do not manage)."""
AmiFamily = Literal["al2023", "bottlerocket"]
"""AMI alias families with an NVIDIA variant that Karpenter picks for GPU instances (pkg/providers/amifamily)."""
ConsolidationPolicy = Literal["WhenEmpty", "WhenEmptyOrUnderutilized"]
"""Values of a NodePool's `disruption.consolidationPolicy`."""
DURATION: Final = re.compile(r"^(([0-9]+(s|m|h))+|Never)$")
"""Pattern of `consolidateAfter` and `expireAfter` in the NodePool CRD."""
GRACE_PERIOD: Final = re.compile(r"^([0-9]+(s|m|h))+$")
"""Pattern of `terminationGracePeriod` in the NodePool CRD (no `Never`)."""
BUDGET_NODES: Final = re.compile(r"^((100|[0-9]{1,2})%|[0-9]+)$")
"""Pattern of a disruption budget's `nodes` in the NodePool CRD: a count or a percentage."""
