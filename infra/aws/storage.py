"""`ModelStore`: S3 buckets for datasets, checkpoints and models, encrypted and private by default."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Final

import pulumi
import pulumi_aws as aws

from infra.aws.iam import Grant
from infra.config.storage import StorageConfig
from workloads.common.vocab import BUCKET_ROLE_TAG, BUCKET_ROLES, BucketRole

READ_ACTIONS: Final = ("s3:GetObject", "s3:GetObjectVersion")
"""Object actions `grant_read` allows."""
WRITE_ACTIONS: Final = ("s3:PutObject", "s3:AbortMultipartUpload", "s3:DeleteObject")
"""Object actions `grant_write` allows on top of read (delete: checkpoint rotation keeps the last K)."""
LIST_ACTIONS: Final = ("s3:ListBucket",)
"""Bucket actions both grants allow, limited to the prefix by condition."""
KMS_DECRYPT: Final = ("kms:Decrypt",)
"""KMS actions needed to read SSE-KMS objects."""
KMS_ENCRYPT: Final = ("kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey")
"""KMS actions needed to write SSE-KMS objects (multipart uploads also decrypt)."""


class ModelStore(pulumi.ComponentResource):
    """Three S3 buckets with SSE-KMS, versioning, public access blocked, TLS-only and lifecycle rules."""

    bucket_names: dict[BucketRole, pulumi.Output[str]]
    """Bucket names by role."""
    bucket_arns: dict[BucketRole, pulumi.Output[str]]
    """Bucket ARNs by role."""
    kms_key_arn: pulumi.Output[str]
    """The KMS key encrypting every object."""

    def __init__(self, name: str, config: StorageConfig, *, protect: bool,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        """`protect` sets Pulumi `protect` on the buckets and key (the stack's deletion protection)."""
        super().__init__("modelplane:storage:ModelStore", name, None, opts)
        key = aws.kms.Key(f"{name}-kms", description="modelplane model store objects", enable_key_rotation=True,
                          deletion_window_in_days=config.kms_deletion_window_days,
                          opts=pulumi.ResourceOptions(parent=self, protect=protect))
        # `alias/modelplane-*`: the only aliases the deployer role may create (docs/deployer-policy.json, KeyAliases).
        aws.kms.Alias(f"{name}-kms", name=f"alias/modelplane-{pulumi.get_stack()}-model-store",
                      target_key_id=key.key_id, opts=pulumi.ResourceOptions(parent=self))
        self.kms_key_arn = key.arn
        self.bucket_names = {}
        self.bucket_arns = {}
        for role in BUCKET_ROLES:
            bucket = self._bucket(name, role, key, config, protect)
            self.bucket_names[role] = bucket.bucket
            self.bucket_arns[role] = bucket.arn
        self.register_outputs({
            **{f"{role}_bucket": bucket for role, bucket in self.bucket_names.items()},
            "kms_key_arn": self.kms_key_arn,
        })

    def _bucket(self, name: str, role: BucketRole, key: aws.kms.Key, config: StorageConfig,
                protect: bool) -> aws.s3.Bucket:
        rules = [aws.s3.BucketLifecycleConfigurationRuleArgs(
            id="abort-incomplete-multipart", status="Enabled",
            filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=""),
            abort_incomplete_multipart_upload=aws.s3.BucketLifecycleConfigurationRuleAbortIncompleteMultipartUploadArgs(
                days_after_initiation=config.abort_incomplete_multipart_days),
        )]
        if role == "checkpoints":
            # Checkpoints are rewritten constantly; old versions are dead weight after the retention window.
            rules.append(aws.s3.BucketLifecycleConfigurationRuleArgs(
                id="expire-noncurrent-checkpoints", status="Enabled",
                filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=""),
                noncurrent_version_expiration=aws.s3.BucketLifecycleConfigurationRuleNoncurrentVersionExpirationArgs(
                    noncurrent_days=config.noncurrent_version_expiration_days),
            ))
        return private_bucket(f"{name}-{role}", key=key, rules=rules, parent=self, force_destroy=config.force_destroy,
                              protect=protect, tags={BUCKET_ROLE_TAG: role})

    def grant_read(self, role: BucketRole, prefix: str = "") -> Grant:
        """Read objects under `prefix` in one bucket, with the KMS decrypt it needs."""
        return self._grant(role, prefix, READ_ACTIONS, KMS_DECRYPT)

    def grant_write(self, role: BucketRole, prefix: str = "") -> Grant:
        """Read and write objects under `prefix` in one bucket, with the KMS actions it needs."""
        return self._grant(role, prefix, (*READ_ACTIONS, *WRITE_ACTIONS), KMS_ENCRYPT)

    def _grant(self, role: BucketRole, prefix: str, actions: tuple[str, ...], kms: tuple[str, ...]) -> Grant:
        arn = self.bucket_arns[role]
        list_condition = {"StringLike": {"s3:prefix": [f"{prefix}*"]}} if prefix else None
        list_statement = arn.apply(lambda a: {"Effect": "Allow", "Action": list(LIST_ACTIONS), "Resource": a,
                                              **({"Condition": list_condition} if list_condition else {})})
        objects = arn.apply(lambda a: {"Effect": "Allow", "Action": list(actions), "Resource": f"{a}/{prefix}*"})
        key = self.kms_key_arn.apply(lambda k: {"Effect": "Allow", "Action": list(kms), "Resource": k})
        return Grant(statements=(list_statement, objects, key))



def private_bucket(name: str, *, key: aws.kms.Key, rules: Sequence[aws.s3.BucketLifecycleConfigurationRuleArgs],
                   parent: pulumi.Resource, force_destroy: bool, protect: bool = False,
                   tags: Mapping[str, str] | None = None) -> aws.s3.Bucket:
    """A bucket with ACLs off, public access blocked, versioning, SSE-KMS with `key` (bucket keys on), a TLS-only
    policy and the lifecycle `rules`: every bucket of the platform is one of these."""
    child = pulumi.ResourceOptions(parent=parent)
    bucket = aws.s3.Bucket(name, force_destroy=force_destroy, tags=dict(tags) if tags else None,
                           opts=pulumi.ResourceOptions(parent=parent, protect=protect))
    # ACLs off: the bucket policy alone decides access.
    aws.s3.BucketOwnershipControls(name, bucket=bucket.id, rule=aws.s3.BucketOwnershipControlsRuleArgs(
        object_ownership="BucketOwnerEnforced"), opts=child)
    public_block = aws.s3.BucketPublicAccessBlock(
        name, bucket=bucket.id, block_public_acls=True, block_public_policy=True,
        ignore_public_acls=True, restrict_public_buckets=True, opts=child,
    )
    aws.s3.BucketVersioning(name, bucket=bucket.id, versioning_configuration=(
        aws.s3.BucketVersioningVersioningConfigurationArgs(status="Enabled")), opts=child)
    aws.s3.BucketServerSideEncryptionConfiguration(name, bucket=bucket.id, rules=[
        aws.s3.BucketServerSideEncryptionConfigurationRuleArgs(
            apply_server_side_encryption_by_default=aws.s3.BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs(
                sse_algorithm="aws:kms", kms_master_key_id=key.arn,
            ),
            # Bucket keys cut KMS request costs by ~99% for checkpoint-sized write bursts.
            bucket_key_enabled=True,
        )
    ], opts=child)
    aws.s3.BucketPolicy(name, bucket=bucket.id, policy=bucket.arn.apply(_tls_only_policy),
                        opts=pulumi.ResourceOptions(parent=parent, depends_on=[public_block]))
    aws.s3.BucketLifecycleConfiguration(name, bucket=bucket.id, rules=list(rules), opts=child)
    return bucket

def _tls_only_policy(bucket_arn: str) -> str:
    return json.dumps({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "DenyInsecureTransport",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": [bucket_arn, f"{bucket_arn}/*"],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        }],
    }, sort_keys=True)
