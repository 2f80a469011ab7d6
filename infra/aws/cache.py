"""`Cache`: an ElastiCache Redis replication group, encrypted everywhere, reachable only from the cluster."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import pulumi
import pulumi_aws as aws
import pulumi_random as random

from infra.config.storage import CacheConfig

REDIS_PORT: Final = 6379
"""The port of the replication group and of its security-group rule."""


def final_snapshot_name(name: str) -> str:
    """`modelplane-<stack>-<name>-final`: the snapshot ElastiCache takes when a protected stack's replication group
    is deleted (pulumi-aws 7.51 `aws.elasticache.ReplicationGroup.final_snapshot_identifier`: "If omitted, no final
    snapshot will be made"). Pulumi `protect` only stops Pulumi's own deletes; this keeps the data through a console
    or CLI delete, an unprotect-and-destroy, or a replacement. The name is fixed, so a second delete while an earlier
    final snapshot of that name exists fails (ElastiCache refuses a duplicate snapshot name) rather than losing data:
    copy or delete the old snapshot first."""
    return f"modelplane-{pulumi.get_stack()}-{name}-final"


class Cache(pulumi.ComponentResource):
    """Redis with TLS in transit, KMS at rest and a generated AUTH token kept in Secrets Manager."""

    primary_endpoint: pulumi.Output[str]
    """Hostname of the primary (TLS on port 6379)."""
    port: int
    """The Redis port."""
    auth_token_secret_arn: pulumi.Output[str]
    """Secrets Manager ARN holding the AUTH token."""
    security_group_id: pulumi.Output[str]
    """The cache's security group."""
    redis_url: pulumi.Output[str]
    """rediss:// URL with the AUTH token, for the model servers (a secret output): it reaches a pod only as a key of a
    Kubernetes Secret mounted read-only as a file (infra/k8s/podspec.py secret_files), never as an env var."""

    def __init__(self, name: str, config: CacheConfig, *, vpc_id: pulumi.Input[str],
                 subnet_ids: Sequence[pulumi.Input[str]], allowed_security_group_ids: Sequence[pulumi.Input[str]],
                 protect: bool, opts: pulumi.ResourceOptions | None = None) -> None:
        """The cache lives in `subnet_ids` of `vpc_id` and admits 6379 from `allowed_security_group_ids` (more
        with `allow_from`); `protect` (the stack's deletion protection, on in prod) sets Pulumi `protect` on the
        replication group and has ElastiCache take a final snapshot when it is deleted anyway."""
        super().__init__("modelplane:cache:Cache", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        key = aws.kms.Key(f"{name}-kms", description="modelplane Redis at rest and AUTH token secret",
                          enable_key_rotation=True, deletion_window_in_days=config.kms_deletion_window_days, opts=child)
        # ElastiCache AUTH tokens reject '@', '"', '/' and spaces; alphanumerics avoid every escaping pitfall.
        token = random.RandomPassword(f"{name}-auth", length=64, special=False, opts=child)
        secret = aws.secretsmanager.Secret(f"{name}-auth", description="Redis AUTH token for modelplane serving",
                                           kms_key_id=key.arn, recovery_window_in_days=7, opts=child)
        aws.secretsmanager.SecretVersion(f"{name}-auth", secret_id=secret.id, secret_string=token.result, opts=child)
        self.auth_token_secret_arn = secret.arn
        subnet_group = aws.elasticache.SubnetGroup(f"{name}-subnets", description="modelplane cache subnets",
                                                   subnet_ids=list(subnet_ids), opts=child)
        sg = aws.ec2.SecurityGroup(f"{name}-sg", vpc_id=vpc_id, description="Redis, only from the cluster",
                                   tags={"Name": f"{name}-redis"}, opts=child)
        self.security_group_id = sg.id
        self._component_name = name
        self.port = REDIS_PORT
        for i, source in enumerate(allowed_security_group_ids):
            self.allow_from(source, suffix=str(i))
        group = aws.elasticache.ReplicationGroup(
            f"{name}-redis",
            description="modelplane inference response cache",
            engine="redis",
            engine_version=config.engine_version,
            node_type=config.node_type,
            num_cache_clusters=config.num_nodes,
            port=REDIS_PORT,
            automatic_failover_enabled=config.automatic_failover,
            multi_az_enabled=config.multi_az,
            transit_encryption_enabled=True,
            at_rest_encryption_enabled=True,
            kms_key_id=key.arn,
            auth_token=token.result,
            subnet_group_name=subnet_group.name,
            security_group_ids=[sg.id],
            snapshot_retention_limit=config.snapshot_retention_days,
            final_snapshot_identifier=final_snapshot_name(name) if protect else None,
            auto_minor_version_upgrade=True,
            opts=pulumi.ResourceOptions(parent=self, protect=protect),
        )
        self.primary_endpoint = group.primary_endpoint_address
        self.redis_url = pulumi.Output.secret(pulumi.Output.concat(
            "rediss://:", token.result, "@", group.primary_endpoint_address, f":{REDIS_PORT}/0"))
        self.register_outputs({"primary_endpoint": self.primary_endpoint,
                               "auth_token_secret_arn": self.auth_token_secret_arn})

    def allow_from(self, security_group_id: pulumi.Input[str], *, suffix: str) -> None:
        """Admit Redis traffic (6379/tcp) from one more security group."""
        aws.vpc.SecurityGroupIngressRule(
            f"{self._component_name}-from-{suffix}", security_group_id=self.security_group_id,
            referenced_security_group_id=security_group_id, ip_protocol="tcp", from_port=REDIS_PORT,
            to_port=REDIS_PORT, description="Redis from the EKS cluster", opts=pulumi.ResourceOptions(parent=self),
        )
