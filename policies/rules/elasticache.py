"""ElastiCache Redis: encrypted in transit and at rest, authenticated, and multi-AZ with failover in production."""

from __future__ import annotations

from typing import Final

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
)

from policies.environment import ENVIRONMENT_SCHEMA, is_production
from policies.wire import as_list, quantity

REPLICATION_GROUP: Final = "aws:elasticache/replicationGroup:ReplicationGroup"
_URL = "https://docs.aws.amazon.com/AmazonElastiCache/latest/dg/encryption.html"


def _encryption(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != REPLICATION_GROUP:
        return
    missing = [key for key in ("transitEncryptionEnabled", "atRestEncryptionEnabled") if args.props.get(key) is not True]
    if missing:
        report(f"Redis replication group '{args.name}' has {' and '.join(missing)} off, so cached responses travel "
               f"or rest in clear text. Fix: set transit_encryption_enabled=True and at_rest_encryption_enabled=True "
               f"(with kms_key_id).", args.urn)


def _auth(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != REPLICATION_GROUP:
        return
    # Either a Redis AUTH token or RBAC user groups authenticate clients.
    if not args.props.get("authToken") and not as_list(args.props.get("userGroupIds")):
        report(f"Redis replication group '{args.name}' accepts unauthenticated clients. Fix: set auth_token from a "
               f"generated secret (Cache does this) or attach user_group_ids.", args.urn)


def _multi_az(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != REPLICATION_GROUP or not is_production(args.get_config() or {}):
        return
    problems = []
    if args.props.get("multiAzEnabled") is not True:
        problems.append("multi_az_enabled is off")
    if args.props.get("automaticFailoverEnabled") is not True:
        problems.append("automatic_failover_enabled is off")
    nodes = quantity(args.props.get("numCacheClusters"))
    replicas = quantity(args.props.get("replicasPerNodeGroup"))
    if (nodes or 1) < 2 and not replicas:
        problems.append(f"it has {int(nodes or 1)} node and no replica")
    if problems:
        report(f"Redis replication group '{args.name}' in a production stack: {'; '.join(problems)}, so losing one "
               f"AZ drops the cache. Fix: modelplane:cache numNodes >= 2, automaticFailover: true, multiAz: true.", args.urn)


ELASTICACHE_ENCRYPTION = ResourceValidationPolicy(
    name="elasticache-encryption",
    description="Redis replication groups encrypt in transit (TLS) and at rest (KMS).",
    validate=_encryption, enforcement_level=EnforcementLevel.MANDATORY, url=_URL,
)
ELASTICACHE_AUTH = ResourceValidationPolicy(
    name="elasticache-auth",
    description="Redis replication groups require an AUTH token or RBAC user groups.",
    validate=_auth, enforcement_level=EnforcementLevel.MANDATORY,
    url="https://docs.aws.amazon.com/AmazonElastiCache/latest/dg/auth.html",
)
REDIS_MULTI_AZ_PRODUCTION = ResourceValidationPolicy(
    name="redis-multi-az-production",
    description="In production, Redis runs a replica in another AZ with automatic failover.",
    validate=_multi_az, enforcement_level=EnforcementLevel.MANDATORY,
    config_schema=PolicyConfigSchema(properties=dict(ENVIRONMENT_SCHEMA)),
    url="https://docs.aws.amazon.com/AmazonElastiCache/latest/dg/AutoFailover.html",
)

POLICIES: Final = (ELASTICACHE_ENCRYPTION, ELASTICACHE_AUTH, REDIS_MULTI_AZ_PRODUCTION)
"""The ElastiCache rules."""
