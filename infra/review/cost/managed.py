"""Cost lines of managed services priced by their size: Amazon MSK (Provisioned; the platform never creates an
MSK Serverless cluster, see infra/config/streaming.py) and Amazon OpenSearch Service.

Input names are pulumi-aws 7.51.1's wire names (`aws:msk/cluster:Cluster` brokerNodeGroupInfo.instanceType and
.storageInfo.ebsStorageInfo.volumeSize, numberOfBrokerNodes; `aws:opensearch/domain:Domain` clusterConfig
.instanceType/.instanceCount/.dedicatedMasterEnabled/.dedicatedMasterType/.dedicatedMasterCount/.warmEnabled/.warmType,
ebsOptions.ebsEnabled/.volumeType/.volumeSize). Usage charges (provisioned storage throughput, data transfer,
snapshots) are outside the estimate, like every other usage charge.
"""

from __future__ import annotations

from typing import Any, Final

from infra.review.cost.lines import Assumptions, CostLine, Pricer, fixed, ranged, usd
from infra.review.cost.prices import PriceTable
from infra.review.graph import Resource
from policies.wire import quantity

OPENSEARCH_DEFAULT_INSTANCE_COUNT: Final = 1
"""Data nodes when clusterConfig.instanceCount is unset (OpenSearch API ClusterConfig.InstanceCount default)."""


def _count(value: Any, default: int) -> int:
    number = quantity(value)
    return default if number is None else int(number)


def _msk(r: Resource, p: PriceTable, a: Assumptions) -> CostLine:
    group = r.inputs.get("brokerNodeGroupInfo") or {}
    kind = str(group.get("instanceType"))
    brokers = _count(r.inputs.get("numberOfBrokerNodes"), 0)
    volume = quantity(((group.get("storageInfo") or {}).get("ebsStorageInfo") or {}).get("volumeSize"))
    if kind not in p.msk_broker:
        return ranged(r, None, None, f"{brokers} × {kind} (not in the price table)", unknown=(kind,))
    compute = brokers * p.monthly(p.msk_broker[kind])
    basis = f"{brokers} brokers × {kind} {usd(p.msk_broker[kind])}/h"
    if volume is None:
        return ranged(r, None, None, f"{basis}; storage volumeSize unset", unknown=("msk volumeSize",))
    storage = brokers * volume * p.msk_storage_gb_month
    return fixed(r, compute + storage, f"{basis} + {brokers} × {volume:g} GB × {usd(p.msk_storage_gb_month)}/GB-month")


def _opensearch(r: Resource, p: PriceTable, a: Assumptions) -> CostLine:
    config = r.inputs.get("clusterConfig") or {}
    nodes = [(_count(config.get("instanceCount"), OPENSEARCH_DEFAULT_INSTANCE_COUNT), str(config.get("instanceType")))]
    if config.get("dedicatedMasterEnabled") is True:
        nodes.append((_count(config.get("dedicatedMasterCount"), 0), str(config.get("dedicatedMasterType"))))
    unknown = [kind for _, kind in nodes if kind not in p.opensearch]
    if config.get("warmEnabled") is True:
        unknown.append(f"{config.get('warmType')} (UltraWarm)")
    parts = [f"{count} × {kind} {usd(p.opensearch[kind])}/h" for count, kind in nodes if kind in p.opensearch]
    monthly = sum(count * p.monthly(p.opensearch[kind]) for count, kind in nodes if kind in p.opensearch)
    ebs = r.inputs.get("ebsOptions") or {}
    if ebs.get("ebsEnabled") is True:
        volume_type, size = str(ebs.get("volumeType")), quantity(ebs.get("volumeSize")) or 0.0
        if volume_type in p.opensearch_ebs_gb_month:
            rate = p.opensearch_ebs_gb_month[volume_type]
            monthly += nodes[0][0] * size * rate
            parts.append(f"{nodes[0][0]} × {size:g} GB {volume_type} × {usd(rate)}/GB-month")
        else:
            unknown.append(f"{volume_type} (OpenSearch EBS)")
    basis = " + ".join(parts) + (f" ({', '.join(unknown)} not in the price table)" if unknown else "")
    if unknown:
        return ranged(r, None, None, basis, unknown=tuple(unknown))
    return fixed(r, monthly, basis)


MANAGED_PRICERS: Final[dict[str, Pricer]] = {
    "aws:msk/cluster:Cluster": _msk,
    "aws:opensearch/domain:Domain": _opensearch,
}
"""Resource type → pricer, merged into estimate.PRICERS."""
