"""The `network` section: the VPC, its subnets per AZ, endpoints and flow logs."""

from __future__ import annotations

import ipaddress
from typing import Literal

from pydantic import Field

from infra.config.base import Section, not_one_of, snake
from infra.config.logging import CLOUDWATCH_RETENTION_DAYS

INTERFACE_ENDPOINT_SERVICES = ("ecr.api", "ecr.dkr", "sts", "logs", "ec2", "elasticloadbalancing", "sqs", "kms")
"""VPC interface endpoint services a stack may ask for."""


class FlowLogsConfig(Section):
    """VPC flow logs to CloudWatch Logs."""

    enabled: bool = True
    """Whether VPC flow logs are on. Defaults to true."""
    retention_days: int = Field(default=30, ge=1, le=3653)
    """CloudWatch retention of the flow-log group, in days. Defaults to 30. Valid: CLOUDWATCH_RETENTION_DAYS."""
    traffic_type: Literal["ACCEPT", "REJECT", "ALL"] = "ALL"
    """Which traffic to log. Defaults to ALL. Valid values: ACCEPT, REJECT, ALL."""


class NetworkConfig(Section):
    """The VPC: one public, one private and optionally one intra subnet per AZ."""

    cidr: ipaddress.IPv4Network
    """VPC CIDR block, e.g. 10.0.0.0/16."""
    availability_zones: list[str]
    """AZ names, in subnet order. Valid: 2 to 6 distinct zones."""
    public_subnets: list[ipaddress.IPv4Network]
    """One public subnet CIDR per AZ (load balancers, NAT gateways)."""
    private_subnets: list[ipaddress.IPv4Network]
    """One private subnet CIDR per AZ (nodes, pods, caches)."""
    intra_subnets: list[ipaddress.IPv4Network] = []
    """Optional isolated subnets per AZ with no internet route (control-plane ENIs). Defaults to none."""
    nat_gateways: Literal["perAz", "single"] = "perAz"
    """NAT layout: one per AZ (zone-resilient) or one shared (cheaper). Defaults to perAz. Valid values: perAz, single."""
    interface_endpoints: list[str] = []
    """Interface endpoints (S3 always gets a gateway one). Defaults to none. Valid values: INTERFACE_ENDPOINT_SERVICES."""
    flow_logs: FlowLogsConfig = FlowLogsConfig()
    """VPC flow logs settings."""

    def checks(self) -> list[tuple[str, str]]:
        """Cross-field rules: AZ count, subnets per AZ, inside the VPC and disjoint."""
        problems: list[tuple[str, str]] = []
        zones = self.availability_zones
        if not 2 <= len(zones) <= 6:
            problems.append(("availabilityZones", f"must list 2 to 6 zones (got {len(zones)})"))
        if len(set(zones)) != len(zones):
            problems.append(("availabilityZones", f"zones must be distinct (got {zones})"))
        seen: list[tuple[str, ipaddress.IPv4Network]] = []
        for key in ("publicSubnets", "privateSubnets", "intraSubnets"):
            subnets: list[ipaddress.IPv4Network] = getattr(self, snake(key))
            if subnets and len(subnets) != len(zones):
                problems.append((key, f"needs one CIDR per availability zone ({len(zones)}), got {len(subnets)}"))
            for i, subnet in enumerate(subnets):
                path = f"{key}[{i}]"
                if not subnet.subnet_of(self.cidr):
                    problems.append((path, f"must be inside network.cidr {self.cidr} (got {subnet})"))
                for other_path, other in seen:
                    if subnet.overlaps(other):
                        problems.append((path, f"overlaps network.{other_path} {other} (got {subnet})"))
                seen.append((path, subnet))
        for i, service in enumerate(self.interface_endpoints):
            if service not in INTERFACE_ENDPOINT_SERVICES:
                problems.append((f"interfaceEndpoints[{i}]", not_one_of(service, INTERFACE_ENDPOINT_SERVICES)))
        if self.flow_logs.retention_days not in CLOUDWATCH_RETENTION_DAYS:
            problems.append(("flowLogs.retentionDays", "CloudWatch Logs " + not_one_of(
                str(self.flow_logs.retention_days), [str(d) for d in CLOUDWATCH_RETENTION_DAYS])))
        return problems
