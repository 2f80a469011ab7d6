"""S3: public access fully blocked, SSE-KMS, TLS-only bucket policy, versioning in production.

Bucket settings live in separate resources (BucketPublicAccessBlock, BucketPolicy, ...), so
these are stack rules that pair every bucket with its companions. A companion belongs to a
bucket when (in order): the engine's property dependencies say its `bucket` input came from
that bucket (under `pulumi preview`, where generated names are still unknown); its `bucket`
input equals the bucket's explicit name; or it shares the bucket's logical name and parent
(the offline graph records no dependency edges, and components name companions after their bucket).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    PolicyResource,
    ReportViolation,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import UnknownValueError

from policies.environment import ENVIRONMENT_SCHEMA, is_production
from policies.wire import as_list, policy_document, statements

BUCKET_TYPES: Final = frozenset({"aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2"})
PUBLIC_ACCESS_BLOCK: Final = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
ACL_TYPES: Final = frozenset({"aws:s3/bucketAcl:BucketAcl", "aws:s3/bucketAclV2:BucketAclV2"})
SSE_TYPES: Final = frozenset({
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
    "aws:s3/bucketServerSideEncryptionConfigurationV2:BucketServerSideEncryptionConfigurationV2",
})
VERSIONING_TYPES: Final = frozenset({"aws:s3/bucketVersioning:BucketVersioning",
                                     "aws:s3/bucketVersioningV2:BucketVersioningV2"})
BUCKET_POLICY: Final = "aws:s3/bucketPolicy:BucketPolicy"
BLOCK_FLAGS: Final = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
"""All four must be true: https://docs.aws.amazon.com/AmazonS3/latest/userguide/access-control-block-public-access.html"""
PUBLIC_ACLS: Final = frozenset({"public-read", "public-read-write", "authenticated-read"})
KMS_ALGORITHMS: Final = ("aws:kms", "aws:kms:dsse")
PUBLIC_GROUPS: Final = ("http://acs.amazonaws.com/groups/global/AllUsers",
                        "http://acs.amazonaws.com/groups/global/AuthenticatedUsers")
"""ACL grantee URIs for everyone and for any AWS account (https://docs.aws.amazon.com/AmazonS3/latest/userguide/
acl-overview.html#specifying-grantee-predefined-groups)."""
FIXING_CONDITION_KEYS: Final = frozenset({
    "aws:sourceip", "aws:sourcearn", "aws:sourcevpc", "aws:sourcevpce", "aws:sourceowner", "aws:sourceaccount",
    "s3:x-amz-server-side-encryption-aws-kms-key-id", "aws:userid",
})
"""Condition keys whose fixed value makes a wildcard-principal statement non-public (S3 API reference,
PublicAccessBlockConfiguration: "Amazon S3 considers a bucket policy public unless at least one of the following
conditions is true")."""


def _parent_urn(resource: PolicyResource) -> str:
    return resource.parent.urn if resource.parent is not None else ""


def _linked(companion: PolicyResource, bucket: PolicyResource) -> bool:
    dependencies = (companion.property_dependencies or {}).get("bucket")
    if dependencies:
        return any(dependency.urn == bucket.urn for dependency in dependencies)
    try:
        name = bucket.props.get("bucket")
        if name and companion.props.get("bucket") == name:
            return True
    except UnknownValueError:
        # The name is computed at deploy time; fall back to the logical name and parent below.
        return companion.name == bucket.name and _parent_urn(companion) == _parent_urn(bucket)
    return companion.name == bucket.name and _parent_urn(companion) == _parent_urn(bucket)


def _buckets(args: StackValidationArgs) -> list[PolicyResource]:
    return [r for r in args.resources if r.resource_type in BUCKET_TYPES]


def _companions(args: StackValidationArgs, bucket: PolicyResource, types: Iterable[str]) -> list[PolicyResource]:
    wanted = frozenset(types)
    return [r for r in args.resources if r.resource_type in wanted and _linked(r, bucket)]


def _public_grants(props: Mapping[str, Any]) -> list[str]:
    """Permissions an ACL (BucketAcl's access_control_policy, or a bucket's inline grants) gives a public group."""
    grants = as_list((props.get("accessControlPolicy") or {}).get("grants")) + as_list(props.get("grants"))
    found = []
    for grant in grants:
        if not isinstance(grant, Mapping):
            continue
        nested = grant.get("grantee")
        grantee: Mapping[str, Any] = nested if isinstance(nested, Mapping) else grant
        if grantee.get("uri") in PUBLIC_GROUPS:
            permissions = as_list(grant.get("permission")) + as_list(grant.get("permissions"))
            found.append(f"{'/'.join(map(str, permissions))} to {str(grantee.get('uri')).rsplit('/', 1)[-1]}")
    return found


def _wildcard_principal(statement: Mapping[str, Any]) -> bool:
    if "NotPrincipal" in statement:
        return True  # Allow with NotPrincipal grants everyone but the listed principals
    principal = statement.get("Principal")
    if principal == "*":
        return True
    return isinstance(principal, Mapping) and "*" in [str(p) for p in as_list(principal.get("AWS"))]


def _fixed_by_condition(statement: Mapping[str, Any]) -> bool:
    for operator, clause in (statement.get("Condition") or {}).items():
        if not isinstance(clause, Mapping) or str(operator).startswith("ForAnyValue"):
            continue
        for key, values in clause.items():
            values = [str(v) for v in as_list(values)]
            if (str(key).lower() in FIXING_CONDITION_KEYS and values
                    and not any("*" in v or v in ("0.0.0.0/0", "::/0") for v in values)):
                return True
    return False


def _public_statements(document: Mapping[str, Any] | None) -> list[str]:
    """Sids (or indexes) of Allow statements open to any principal, not fixed by a condition S3 accepts."""
    return [str(statement.get("Sid") or f"Statement[{i}]") for i, statement in enumerate(statements(document))
            if statement.get("Effect") == "Allow" and _wildcard_principal(statement)
            and not _fixed_by_condition(statement)]


def _public_access(args: StackValidationArgs, report: ReportViolation) -> None:
    for block in (r for r in args.resources if r.resource_type == PUBLIC_ACCESS_BLOCK):
        off = [flag for flag in BLOCK_FLAGS if block.props.get(flag) is not True]
        if off:
            report(f"Public access block '{block.name}' leaves {', '.join(off)} off, so the bucket can be made public. "
                   f"Fix: set block_public_acls, block_public_policy, ignore_public_acls and restrict_public_buckets "
                   f"to True.", block.urn)
    for acl in (r for r in args.resources if r.resource_type in ACL_TYPES):
        if acl.props.get("acl") in PUBLIC_ACLS:
            report(f"Bucket ACL '{acl.name}' grants {acl.props.get('acl')}. Fix: remove the ACL and set object "
                   f"ownership to BucketOwnerEnforced; grant access through IAM instead.", acl.urn)
        if _public_grants(acl.props):
            report(f"Bucket ACL '{acl.name}' grants {', '.join(_public_grants(acl.props))}. Fix: remove those grants "
                   f"and set object ownership to BucketOwnerEnforced; grant access through IAM instead.", acl.urn)
    for policy in (r for r in args.resources if r.resource_type == BUCKET_POLICY):
        try:
            public = _public_statements(policy_document(policy.props.get("policy")))
        except UnknownValueError:
            continue  # judged at `pulumi up`, when the ARNs it embeds are known
        if public:
            report(f"Bucket policy '{policy.name}' allows any principal in {', '.join(public)}, which makes the "
                   f"bucket public. Fix: name the principals (role ARNs), or fix the statement with a condition on "
                   f"aws:SourceVpce, aws:SourceVpc, aws:SourceAccount or aws:SourceArn.", policy.urn)
    for bucket in _buckets(args):
        if bucket.props.get("acl") in PUBLIC_ACLS or _public_grants(bucket.props):
            what = bucket.props.get("acl") if bucket.props.get("acl") in PUBLIC_ACLS else _public_grants(bucket.props)
            report(f"Bucket '{bucket.name}' has the public ACL {what}. Fix: remove `acl`/`grants` and grant access "
                   f"through IAM.", bucket.urn)
        if not _companions(args, bucket, {PUBLIC_ACCESS_BLOCK}):
            report(f"Bucket '{bucket.name}' has no public access block. Fix: add an aws.s3.BucketPublicAccessBlock "
                   f"for it with all four settings true (ModelStore does this).", bucket.urn)


def _sse_algorithm(props: Mapping[str, Any]) -> list[str]:
    rules = as_list(props.get("rules")) or as_list((props.get("serverSideEncryptionConfiguration") or {}).get("rule"))
    found = []
    for rule in rules:
        default = (rule or {}).get("applyServerSideEncryptionByDefault") or {}
        found.append(str(default.get("sseAlgorithm") or ""))
    return found


def _kms_encryption(args: StackValidationArgs, report: ReportViolation) -> None:
    for bucket in _buckets(args):
        configs = _companions(args, bucket, SSE_TYPES)
        algorithms = [a for config in configs for a in _sse_algorithm(config.props)] + _sse_algorithm(bucket.props)
        if not algorithms:
            report(f"Bucket '{bucket.name}' has no default encryption configuration, so objects get SSE-S3 at best. "
                   f"Fix: add an aws.s3.BucketServerSideEncryptionConfiguration with sse_algorithm 'aws:kms' and "
                   f"a customer-managed key.", bucket.urn)
        elif any(a not in KMS_ALGORITHMS for a in algorithms):
            report(f"Bucket '{bucket.name}' encrypts with {sorted(set(algorithms))}, not SSE-KMS. Fix: set "
                   f"sse_algorithm to 'aws:kms' with kms_master_key_id of a customer-managed key.", bucket.urn)


def _denies_insecure_transport(document: Mapping[str, Any] | None) -> bool:
    for statement in statements(document):
        condition = statement.get("Condition") or {}
        secure = (condition.get("Bool") or {}).get("aws:SecureTransport")
        if statement.get("Effect") == "Deny" and str(secure).lower() == "false":
            return True
    return False


def _tls_only(args: StackValidationArgs, report: ReportViolation) -> None:
    for bucket in _buckets(args):
        try:
            documents = [policy_document(source.props.get("policy"))
                         for source in [*_companions(args, bucket, {BUCKET_POLICY}), bucket]]
        except UnknownValueError:
            # The policy embeds the bucket ARN, unknown until the bucket exists; it is judged at `pulumi up`.
            continue
        if not any(_denies_insecure_transport(d) for d in documents):
            report(f"Bucket '{bucket.name}' accepts plain-HTTP requests: no bucket policy statement denies "
                   f"aws:SecureTransport=false. Fix: add a Deny statement on s3:* for the bucket and its objects "
                   f"with Condition Bool aws:SecureTransport 'false'.", bucket.urn)


def _versioning(args: StackValidationArgs, report: ReportViolation) -> None:
    if not is_production(args.get_config() or {}):
        return
    for bucket in _buckets(args):
        states = [str((v.props.get("versioningConfiguration") or {}).get("status"))
                  for v in _companions(args, bucket, VERSIONING_TYPES)]
        inline = bucket.props.get("versioning") or {}
        if "Enabled" not in states and inline.get("enabled") is not True:
            report(f"Bucket '{bucket.name}' is not versioned in a production stack, so an overwrite or delete is "
                   f"unrecoverable. Fix: add an aws.s3.BucketVersioning with status 'Enabled'.", bucket.urn)


def _stack_rule(name: str, description: str, validate: Callable[[StackValidationArgs, ReportViolation], None],
                config_schema: PolicyConfigSchema | None = None) -> StackValidationPolicy:
    return StackValidationPolicy(name=name, description=description, validate=validate,
                                 enforcement_level=EnforcementLevel.MANDATORY, config_schema=config_schema,
                                 url="https://docs.aws.amazon.com/AmazonS3/latest/userguide/security-best-practices.html")


S3_PUBLIC_ACCESS_BLOCKED = _stack_rule(
    "s3-public-access-blocked",
    "Every S3 bucket has a public access block with all four settings on, no public ACL or grant, and no bucket "
    "policy statement allowing any principal.",
    _public_access,
)
S3_KMS_ENCRYPTION = _stack_rule(
    "s3-kms-encryption",
    "Every S3 bucket encrypts objects by default with SSE-KMS.",
    _kms_encryption,
)
S3_TLS_ONLY = _stack_rule(
    "s3-tls-only",
    "Every S3 bucket policy denies requests that are not over TLS.",
    _tls_only,
)
_VERSIONING_SCHEMA = PolicyConfigSchema(properties=dict(ENVIRONMENT_SCHEMA))
S3_VERSIONING_PRODUCTION = _stack_rule(
    "s3-versioning-production",
    "In production every S3 bucket is versioned.",
    _versioning,
    _VERSIONING_SCHEMA,
)

POLICIES: Final = (S3_PUBLIC_ACCESS_BLOCKED, S3_KMS_ENCRYPTION, S3_TLS_ONLY, S3_VERSIONING_PRODUCTION)
"""The S3 rules."""

