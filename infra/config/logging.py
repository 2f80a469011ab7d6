"""Stack config for the log pipeline: `modelplane:logging` (Fluent Bit, CloudWatch Logs, optional OpenSearch).

`enabled` left unset is resolved by infra/config/parse.py like the other platform services: on for `aws`
stacks, off for `kubeconfig` (local) stacks, where `enabled: true` ships to Fluent Bit's stdout.
"""

from __future__ import annotations

from typing import Final

from pydantic import Field

from infra.config.base import Section, not_one_of

CLOUDWATCH_RETENTION_DAYS: Final = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192,
                                    2557, 2922, 3288, 3653)
"""The values CloudWatch Logs' PutRetentionPolicy accepts for retentionInDays (CloudWatch Logs API Reference,
PutRetentionPolicy, "Valid Values")."""


class OpenSearchConfig(Section):
    """`modelplane:logging.openSearch`: an Amazon OpenSearch Service domain, VPC-only, that Fluent Bit also ships to."""

    enabled: bool = False
    """Create the domain and ship logs to it too. Defaults to false."""
    instance_type: str = "r7g.large.search"
    """Data node instance type. Defaults to r7g.large.search."""
    instance_count: int = Field(default=1, ge=1, le=80)
    """Data nodes. Defaults to 1. Valid: 1 to 80."""
    dedicated_masters: bool = False
    """Run three dedicated master nodes. Defaults to false; required in production."""
    master_instance_type: str = "m7g.large.search"
    """Dedicated master instance type. Defaults to m7g.large.search."""
    zone_awareness: bool = False
    """Spread data nodes across availability zones. Defaults to false; required in production."""
    availability_zones: int = Field(default=2, ge=2, le=3)
    """Zones the data nodes span with zoneAwareness. Defaults to 2. Valid: 2 or 3."""
    volume_size_gb: int = Field(default=100, ge=10, le=16384)
    """EBS gp3 volume per data node in GiB. Defaults to 100."""

    def checks(self, production: bool) -> list[tuple[str, str]]:
        """Instance types are OpenSearch's; zone awareness fits the node count; production has no single point of
        failure."""
        problems = []
        for key, value in (("instanceType", self.instance_type), ("masterInstanceType", self.master_instance_type)):
            if not value.endswith(".search"):
                problems.append((key, f"must be an OpenSearch instance type like r7g.large.search (got {value!r})"))
        if self.zone_awareness and self.instance_count % self.availability_zones:
            problems.append(("instanceCount", f"must be a multiple of availabilityZones ({self.availability_zones}) "
                                              f"with zoneAwareness (got {self.instance_count})"))
        if production and self.enabled and not (self.zone_awareness and self.dedicated_masters):
            problems.append(("zoneAwareness", "must be true with dedicatedMasters: true in a production stack (got "
                                              f"zoneAwareness {self.zone_awareness}, dedicatedMasters "
                                              f"{self.dedicated_masters}); one AZ or one master loses the domain"))
        return problems


class LoggingConfig(Section):
    """`modelplane:logging`: Fluent Bit on every node; CloudWatch Logs per namespace on aws, stdout elsewhere."""

    enabled: bool | None = None
    """Run the log pipeline. Unset: true on aws stacks, false on kubeconfig (local) stacks (resolved by the parser)."""
    retention_days: int = 30
    """Days CloudWatch keeps each namespace's logs. Defaults to 30. Valid: CLOUDWATCH_RETENTION_DAYS."""
    kms_deletion_window_days: int = Field(default=30, ge=7, le=30)
    """Waiting period before the logs' KMS key is deleted. Defaults to 30. Valid: 7 to 30."""
    open_search: OpenSearchConfig = OpenSearchConfig()
    """The optional OpenSearch domain (aws only). Defaults to off."""

    def checks(self, production: bool, is_aws: bool) -> list[tuple[str, str]]:
        """A retention CloudWatch accepts; OpenSearch only on aws. Logs are always KMS-encrypted (policy
        log-group-kms is mandatory), so there is no switch to turn that off."""
        problems = []
        if self.retention_days not in CLOUDWATCH_RETENTION_DAYS:
            problems.append(("retentionDays", "CloudWatch Logs " + not_one_of(
                str(self.retention_days), [str(d) for d in CLOUDWATCH_RETENTION_DAYS])))
        if self.open_search.enabled and not is_aws:
            problems.append(("openSearch.enabled", "has no effect with target 'kubeconfig' (no AWS; logs go to "
                                                   "stdout); remove it"))
        problems += [(f"openSearch.{key}", message) for key, message in self.open_search.checks(production)]
        return problems
