"""Every rule of the modelplane policy pack, as importable CrossGuard policy objects.

`policies/__main__.py` serves `ALL_POLICIES` to `pulumi preview|up --policy-pack policies`;
`infra.review.policy.evaluate` runs the same objects over the offline graph.
"""

from __future__ import annotations

from typing import Final

from pulumi_policy import Policy

from policies.rules import (
    cost,
    eks,
    elasticache,
    helm,
    iam,
    kueue,
    logging,
    mesh,
    netpol,
    network,
    registry,
    reliability,
    s3,
    storage,
    streaming,
    workloads,
)

ALL_POLICIES: Final[tuple[Policy, ...]] = (
    *s3.POLICIES,
    *storage.POLICIES,
    *eks.POLICIES,
    *elasticache.POLICIES,
    *streaming.POLICIES,
    *logging.POLICIES,
    *registry.POLICIES,
    *iam.POLICIES,
    *network.POLICIES,
    *workloads.POLICIES,
    *netpol.POLICIES,
    *mesh.POLICIES,
    *helm.POLICIES,
    *reliability.POLICIES,
    *kueue.POLICIES,
    *cost.POLICIES,
)
"""The pack's rules, security first, then reliability, then GPU sharing (Kueue), then cost."""
