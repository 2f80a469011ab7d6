"""The `storage` and `cache` sections: the S3 model store and the ElastiCache Redis response cache."""

from __future__ import annotations

from pydantic import Field

from infra.config.base import Section


class StorageConfig(Section):
    """The S3 model store: datasets, checkpoints and models buckets."""

    force_destroy: bool = False
    """Let `pulumi destroy` delete non-empty buckets. Defaults to false; only for throwaway stacks."""
    noncurrent_version_expiration_days: int = Field(default=30, ge=1)
    """Days before noncurrent checkpoint versions expire. Defaults to 30."""
    abort_incomplete_multipart_days: int = Field(default=7, ge=1)
    """Days before incomplete multipart uploads are aborted. Defaults to 7."""
    kms_deletion_window_days: int = Field(default=30, ge=7, le=30)
    """Waiting period before the store's KMS key is deleted. Defaults to 30. Valid: 7 to 30."""


class CacheConfig(Section):
    """The ElastiCache Redis response cache."""

    enabled: bool = True
    """Create the cache. Defaults to true."""
    node_type: str = "cache.t4g.small"
    """ElastiCache node type. Defaults to cache.t4g.small."""
    num_nodes: int = Field(default=1, ge=1, le=6)
    """Primary plus replicas. Defaults to 1. Valid: 1 to 6."""
    automatic_failover: bool = False
    """Promote a replica when the primary fails; needs numNodes >= 2. Defaults to false."""
    multi_az: bool = False
    """Spread nodes across AZs; needs automaticFailover. Defaults to false."""
    engine_version: str = "7.1"
    """Redis engine version. Defaults to 7.1."""
    snapshot_retention_days: int = Field(default=0, ge=0, le=35)
    """Days of daily snapshots kept (0 = none). Defaults to 0."""
    kms_deletion_window_days: int = Field(default=30, ge=7, le=30)
    """Waiting period before the cache's KMS key is deleted. Defaults to 30. Valid: 7 to 30."""

    def checks(self, production: bool) -> list[tuple[str, str]]:
        """Failover needs replicas; multi-AZ needs failover; production needs both."""
        problems = []
        if self.automatic_failover and self.num_nodes < 2:
            problems.append(("numNodes", f"must be >= 2 when automaticFailover is true (got {self.num_nodes})"))
        if self.multi_az and not self.automatic_failover:
            problems.append(("multiAz", "requires automaticFailover: true (got false)"))
        if production and self.enabled and not (self.multi_az and self.automatic_failover):
            problems.append(("multiAz", "must be true with automaticFailover in a production stack (got false)"))
        if not self.node_type.startswith("cache."):
            problems.append(("nodeType", f"must be an ElastiCache node type like cache.r7g.large (got {self.node_type!r})"))
        return problems
