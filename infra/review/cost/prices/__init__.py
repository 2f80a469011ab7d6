"""Dated regional price lists for `modelplane cost` (one YAML file per region) and their schema."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Final

import yaml
from pydantic import BaseModel, ConfigDict, Field

PRICE_TABLE: Final = Path(__file__).resolve().parent / "aws-us-east-1.yaml"
"""The price table `modelplane cost` uses."""


class InstancePrice(BaseModel):
    """One EC2 instance type."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    hourly: float = Field(gt=0)
    """On-Demand USD per hour."""
    vcpu: int = Field(gt=0)
    """vCPUs."""
    memory_gib: float = Field(gt=0)
    """Memory in GiB."""
    gpus: int = 0
    """NVIDIA GPUs."""
    gpu: str | None = None
    """GPU model as Karpenter's instance-gpu-name label spells it (a10g, l4, h100, ...)."""


class PriceDefaults(BaseModel):
    """Default assumptions, overridable per run."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    spot_discount: float = Field(ge=0, lt=1)
    """Fraction off On-Demand that spot capacity costs less."""
    s3_gb_per_bucket: float = Field(ge=0)
    """Stored GB per bucket."""
    nat_gb_per_month: float = Field(ge=0)
    """GB processed per NAT gateway per month."""


class PriceTable(BaseModel):
    """A dated regional price list (infra/prices/*.yaml)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    region: str
    """The AWS region the prices are for."""
    currency: str
    """ISO currency code (USD)."""
    as_of: str
    """The date the prices were compiled (YYYY-MM-DD)."""
    hours_per_month: float
    """Hours in a billing month (AWS calculators use 730)."""
    sources: dict[str, str]
    """Where each group of prices comes from (pricing page URLs)."""
    defaults: PriceDefaults
    """Default usage assumptions."""
    eks_cluster_hourly: float
    """EKS control plane, standard support, per cluster-hour."""
    nat_gateway_hourly: float
    """NAT gateway per hour."""
    nat_gateway_per_gb: float
    """NAT gateway data processing per GB."""
    public_ipv4_hourly: float
    """Public IPv4 address per hour (EIPs, in use or idle)."""
    interface_endpoint_hourly: float
    """Interface VPC endpoint per AZ per hour."""
    nlb_hourly: float
    """Network Load Balancer per hour, before LCUs."""
    alb_hourly: float
    """Application Load Balancer per hour, before LCUs."""
    clb_hourly: float
    """Classic Load Balancer per hour."""
    kms_key_monthly: float
    """Customer-managed KMS key per month."""
    s3_standard_gb_month: float
    """S3 Standard storage per GB-month."""
    secret_monthly: float
    """Secrets Manager secret per month."""
    ec2: dict[str, InstancePrice]
    """EC2 instance types."""
    elasticache: dict[str, float]
    """ElastiCache node type → hourly price."""
    msk_broker: dict[str, float]
    """MSK Provisioned Standard broker type (kafka.*) → hourly price per broker."""
    msk_storage_gb_month: float
    """MSK Provisioned broker EBS storage per GB-month."""
    opensearch: dict[str, float]
    """OpenSearch Service instance type (*.search) → hourly price per node (data or dedicated master)."""
    opensearch_ebs_gb_month: dict[str, float]
    """OpenSearch Service EBS volume type (gp3, gp2) → price per GB-month."""

    def monthly(self, hourly: float) -> float:
        """An hourly price over a month."""
        return hourly * self.hours_per_month


@functools.cache
def load_prices(path: Path = PRICE_TABLE) -> PriceTable:
    """Parse and validate a price table file (once per process: tables are immutable)."""
    return PriceTable.model_validate(yaml.safe_load(path.read_text()))
