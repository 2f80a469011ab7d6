"""Monthly cost estimates from the offline graph and a dated price table shipped in the repo.

Every line is a min..max range. Fixed resources have min == max. Node groups scale between
their min and max sizes. Karpenter NodePools scale from zero, so their range is 0..(the pool
at its limit, filled with the most expensive instance type its requirements admit, on-demand):
a ceiling, not a guess. Spot-capable pools show the same ceiling at the spot discount as a
separate figure (`spot_max`), which the total does not use. An instance type missing from the
table is reported as unknown, never priced at 0.
Usage-based charges (data transfer, LCUs, logs, requests) are outside the estimate. Managed
services priced by their size (MSK, OpenSearch) are in infra/review/cost/managed.py.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from rich.table import Table

from infra.review.cost.lines import Assumptions, CostLine, Pricer, fixed, ranged, rounded, usd
from infra.review.cost.managed import MANAGED_PRICERS
from infra.review.cost.nodepool import pool_ceiling
from infra.review.cost.prices import PriceTable, load_prices
from infra.review.graph import HELM_RELEASE, Graph, Resource
from policies.kube import capacity_types, is_nodepool, kind_of
from policies.wire import as_list, quantity


@dataclass(frozen=True)
class CostReport:
    """A stack's monthly estimate."""

    stack: str
    """The stack name."""
    prices: PriceTable
    """The price table used."""
    assumptions: Assumptions
    """The usage assumptions used."""
    lines: tuple[CostLine, ...]
    """One line per priced resource, in URN order."""
    not_estimated: Mapping[str, int]
    """AWS resource types with no fixed monthly price (free, or usage-based), by count."""
    warnings: tuple[str, ...] = ()
    """Region mismatch, unknown types, unbounded pools."""

    @property
    def total_min(self) -> float:
        """Sum of the lines' minimums."""
        return sum(line.monthly_min or 0.0 for line in self.lines)

    @property
    def total_max(self) -> float | None:
        """Sum of the lines' maximums; None when a line is unbounded."""
        if any(line.unbounded for line in self.lines):
            return None
        return sum(line.monthly_max or 0.0 for line in self.lines)

    @property
    def unknown(self) -> list[str]:
        """Every type the price table lacks."""
        return sorted({u for line in self.lines for u in line.unknown})

    def to_dict(self) -> dict[str, Any]:
        """The JSON document of `modelplane cost --json`."""
        return {
            "stack": self.stack, "currency": self.prices.currency, "region": self.prices.region,
            "price_table": {"as_of": self.prices.as_of, "sources": self.prices.sources},
            "assumptions": {**self.assumptions.__dict__, "hours_per_month": self.prices.hours_per_month},
            "total": {"min": rounded(self.total_min), "max": rounded(self.total_max)},
            "complete": not self.unknown, "unknown_types": self.unknown, "warnings": list(self.warnings),
            "lines": [line.to_dict() for line in self.lines],
            "not_estimated": dict(sorted(self.not_estimated.items())),
        }


def _eks(r: Resource, p: PriceTable, a: Assumptions) -> CostLine:
    return fixed(r, p.monthly(p.eks_cluster_hourly), f"control plane {usd(p.eks_cluster_hourly)}/h")


def _nat(r: Resource, p: PriceTable, a: Assumptions) -> CostLine:
    monthly = p.monthly(p.nat_gateway_hourly) + a.nat_gb_per_month * p.nat_gateway_per_gb
    return fixed(r, monthly, f"{usd(p.nat_gateway_hourly)}/h + {a.nat_gb_per_month:g} GB × {usd(p.nat_gateway_per_gb)}/GB")


def _eip(r: Resource, p: PriceTable, a: Assumptions) -> CostLine:
    return fixed(r, p.monthly(p.public_ipv4_hourly), f"public IPv4 {usd(p.public_ipv4_hourly)}/h")


def _endpoint(r: Resource, p: PriceTable, a: Assumptions) -> CostLine | None:
    if r.inputs.get("vpcEndpointType") != "Interface":
        return None  # gateway endpoints (S3, DynamoDB) are free
    zones = max(1, len(as_list(r.inputs.get("subnetIds"))))
    return fixed(r, zones * p.monthly(p.interface_endpoint_hourly),
                  f"{zones} AZ × {usd(p.interface_endpoint_hourly)}/h")


def _redis(r: Resource, p: PriceTable, a: Assumptions) -> CostLine:
    node_type = str(r.inputs.get("nodeType"))
    groups = int(quantity(r.inputs.get("numNodeGroups")) or 1)
    replicas = quantity(r.inputs.get("replicasPerNodeGroup"))
    nodes = groups * (int(replicas) + 1) if replicas is not None else int(quantity(r.inputs.get("numCacheClusters")) or 1)
    if node_type not in p.elasticache:
        return ranged(r, None, None, f"{nodes} × {node_type} (not in the price table)", unknown=(node_type,))
    return fixed(r, nodes * p.monthly(p.elasticache[node_type]), f"{nodes} × {node_type} {usd(p.elasticache[node_type])}/h")


def _load_balancer(r: Resource, p: PriceTable, a: Assumptions) -> CostLine:
    kind = str(r.inputs.get("loadBalancerType") or "application")
    hourly = {"network": p.nlb_hourly, "application": p.alb_hourly}.get(kind, p.nlb_hourly)
    return fixed(r, p.monthly(hourly), f"{kind} load balancer {usd(hourly)}/h (LCUs not included)")


def _kms(r: Resource, p: PriceTable, a: Assumptions) -> CostLine:
    return fixed(r, p.kms_key_monthly, f"{usd(p.kms_key_monthly)}/key-month")


def _bucket(r: Resource, p: PriceTable, a: Assumptions) -> CostLine:
    return fixed(r, a.s3_gb_per_bucket * p.s3_standard_gb_month,
                  f"{a.s3_gb_per_bucket:g} GB assumed × {usd(p.s3_standard_gb_month)}/GB-month")


def _secret(r: Resource, p: PriceTable, a: Assumptions) -> CostLine:
    return fixed(r, p.secret_monthly, f"{usd(p.secret_monthly)}/secret-month")


def _instance(r: Resource, p: PriceTable, a: Assumptions) -> CostLine:
    kind = str(r.inputs.get("instanceType"))
    if kind not in p.ec2:
        return ranged(r, None, None, f"{kind} (not in the price table)", unknown=(kind,))
    return fixed(r, p.monthly(p.ec2[kind].hourly), f"{kind} {usd(p.ec2[kind].hourly)}/h")


def _node_group(r: Resource, p: PriceTable, a: Assumptions) -> CostLine:
    kinds = [str(k) for k in as_list(r.inputs.get("instanceTypes"))] or ["t3.medium"]  # the EKS API's default
    scaling = r.inputs.get("scalingConfig") or {}
    low, high = int(quantity(scaling.get("minSize")) or 0), int(quantity(scaling.get("maxSize")) or 0)
    kind = kinds[0]  # EKS launches the first listed type for On-Demand groups
    if kind not in p.ec2:
        return ranged(r, None, None, f"{low}..{high} × {kind} (not in the price table)", unknown=(kind,))
    spot = r.inputs.get("capacityType") == "SPOT"
    hourly = p.ec2[kind].hourly * ((1 - a.spot_discount) if spot else 1)
    return ranged(r, low * p.monthly(hourly), high * p.monthly(hourly),
                 f"{low}..{high} × {kind} {usd(hourly)}/h{' (spot)' if spot else ''}",
                 extra={"nodes": {"min": low, "max": high}})


def _nodepool(r: Resource, p: PriceTable, a: Assumptions) -> CostLine | None:
    props = r.inputs
    if not is_nodepool(props):
        return None
    ceiling = pool_ceiling(props, p)
    if ceiling.limit is None:
        return ranged(r, 0.0, None, "scales from zero with no limit: unbounded", unknown=ceiling.unknown, unbounded=True)
    if ceiling.instance_type is None:
        return ranged(r, 0.0, None, f"no instance type in the price table matches the pool's requirements within "
                                    f"its {ceiling.limit}", unknown=ceiling.unknown or ("(no matching type)",))
    kind, count = ceiling.instance_type, ceiling.nodes
    on_demand = count * p.monthly(ceiling.hourly)
    extra: dict[str, Any] = {"nodes": {"min": 0, "max": count}, "instance_type": kind, "gpu_pool": ceiling.gpu_pool}
    if "spot" in capacity_types(props):
        extra["spot_max"] = round(on_demand * (1 - a.spot_discount), 2)
        extra["spot_basis"] = f"same nodes at spot, {a.spot_discount:.0%} off"
    return ranged(r, 0.0, on_demand, f"0..{count} × {kind} ({ceiling.limit}, most expensive matching type, on-demand)",
                 unknown=ceiling.unknown, extra=extra)


def _service_load_balancer(r: Resource, p: PriceTable, a: Assumptions) -> CostLine | None:
    if kind_of(r.inputs) != "Service" or (r.inputs.get("spec") or {}).get("type") != "LoadBalancer":
        return None
    annotations = (r.inputs.get("metadata") or {}).get("annotations") or {}
    nlb = annotations.get("service.beta.kubernetes.io/aws-load-balancer-type") in ("nlb", "external")
    hourly = p.nlb_hourly if nlb else p.clb_hourly
    return fixed(r, p.monthly(hourly), f"{'network' if nlb else 'classic'} load balancer provisioned for the Service "
                                        f"{usd(hourly)}/h")


def _helm_load_balancer(r: Resource, p: PriceTable, a: Assumptions) -> CostLine | None:
    # Charts that expose a LoadBalancer Service (Istio's gateway chart does by default) make the
    # cloud provision a load balancer outside Pulumi's graph.
    values = r.inputs.get("values") or {}
    service = values.get("service") or {}
    chart = str(r.inputs.get("chart") or "").rsplit("/", 1)[-1]
    if service.get("type", "LoadBalancer" if chart == "gateway" else None) != "LoadBalancer":
        return None
    return fixed(r, p.monthly(p.nlb_hourly), f"network load balancer for the {chart} chart's Service {usd(p.nlb_hourly)}/h")


PRICERS: Final[dict[str, Pricer]] = {
    "aws:eks/cluster:Cluster": _eks,
    "aws:eks/nodeGroup:NodeGroup": _node_group,
    "aws:ec2/natGateway:NatGateway": _nat,
    "aws:ec2/eip:Eip": _eip,
    "aws:ec2/vpcEndpoint:VpcEndpoint": _endpoint,
    "aws:ec2/instance:Instance": _instance,
    "aws:elasticache/replicationGroup:ReplicationGroup": _redis,
    "aws:lb/loadBalancer:LoadBalancer": _load_balancer,
    "aws:kms/key:Key": _kms,
    "aws:s3/bucket:Bucket": _bucket,
    "aws:s3/bucketV2:BucketV2": _bucket,
    "aws:secretsmanager/secret:Secret": _secret,
    "kubernetes:core/v1:Service": _service_load_balancer,
    HELM_RELEASE: _helm_load_balancer,
    **MANAGED_PRICERS,
}
"""Resource type → pricer; NodePools are recognised by kind (any karpenter.sh version)."""


def estimate(graph: Graph, prices: PriceTable | None = None, assumptions: Assumptions | None = None,
             *, region: str | None = None) -> CostReport:
    """The monthly estimate of every priced resource in the graph."""
    prices = prices or load_prices()
    assumptions = assumptions or Assumptions.defaults(prices)
    lines: list[CostLine] = []
    not_estimated: Counter[str] = Counter()
    for resource in graph.resources:
        pricer = _nodepool if is_nodepool(resource.inputs) else PRICERS.get(resource.type)
        line = pricer(resource, prices, assumptions) if pricer else None
        if line is not None:
            lines.append(line)
        elif resource.type.startswith("aws:"):
            not_estimated[resource.type] += 1
    warnings = []
    if region and region != prices.region:
        warnings.append(f"prices are {prices.region}'s; {region} may differ")
    unknown = sorted({u for line in lines for u in line.unknown})
    if unknown:
        warnings.append(f"not in the price table, so not priced (total is incomplete): {', '.join(unknown)}")
    unbounded = [line.name for line in lines if line.unbounded]
    if unbounded:
        warnings.append(f"no upper bound: {', '.join(unbounded)} (add limits)")
    return CostReport(stack=graph.stack, prices=prices, assumptions=assumptions, lines=tuple(lines),
                      not_estimated=dict(not_estimated), warnings=tuple(warnings))


def money(value: float | None) -> str:
    """`$1,234.56`, or `unbounded` for None."""
    return "unbounded" if value is None else f"${value:,.2f}"


def span(low: float | None, high: float | None) -> str:
    """One figure when min == max, else `min..max`."""
    if low is None and high is None:
        return "unknown"
    return money(high) if low == high else f"{money(low)}..{money(high)}"


def to_table(report: CostReport) -> Table:
    """A terminal table of the lines, most expensive first, with the total."""
    table = Table(title=f"cost {report.stack}: monthly estimate ({report.prices.currency}, {report.prices.region} "
                        f"prices as of {report.prices.as_of})", title_justify="left")
    table.add_column("resource")
    table.add_column("basis")
    table.add_column("monthly", justify="right")
    for line in sorted(report.lines, key=lambda x: (-(x.monthly_max or math.inf), x.urn)):
        table.add_row(f"{line.type.rsplit(':', 1)[-1]} {line.name}", line.basis, span(line.monthly_min, line.monthly_max))
        if "spot_max" in line.extra:
            table.add_row("  if spot", str(line.extra["spot_basis"]), span(0.0, line.extra["spot_max"]), style="dim")
    table.add_section()
    table.add_row("total", "", span(report.total_min, report.total_max), style="bold")
    return table


def to_markdown(report: CostReport) -> str:
    """A Markdown summary: the total and the lines that can scale or are unknown."""
    total = span(report.total_min, report.total_max)
    rows = [f"**{total}** per month ({report.prices.region} list prices as of {report.prices.as_of})", "",
            "| resource | basis | monthly |", "|---|---|---|"]
    for line in sorted(report.lines, key=lambda x: (-(x.monthly_max or math.inf), x.urn)):
        rows.append(f"| `{line.type.rsplit(':', 1)[-1]} {line.name}` | {line.basis} | "
                    f"{span(line.monthly_min, line.monthly_max)} |")
        if "spot_max" in line.extra:
            rows.append(f"| ↳ if spot | {line.extra['spot_basis']} | {span(0.0, line.extra['spot_max'])} |")
    rows += [f"> {w}" for w in report.warnings]
    return "\n".join(rows)
