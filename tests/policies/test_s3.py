"""S3 rules: public access, SSE-KMS, TLS-only, production versioning; companions paired with their bucket."""

import json

import pytest

from policies.rules.s3 import S3_KMS_ENCRYPTION, S3_PUBLIC_ACCESS_BLOCKED, S3_TLS_ONLY, S3_VERSIONING_PRODUCTION
from tests.policies.helpers import Res, stack_violations, urn

BUCKET = "aws:s3/bucket:Bucket"
PAB = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
SSE = "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
POLICY = "aws:s3/bucketPolicy:BucketPolicy"
VERSIONING = "aws:s3/bucketVersioning:BucketVersioning"
STORE = Res("modelplane:storage:ModelStore", "models", {})
TLS_ONLY = json.dumps({"Statement": [{"Effect": "Deny", "Principal": "*", "Action": "s3:*",
                                      "Resource": ["arn:aws:s3:::b", "arn:aws:s3:::b/*"],
                                      "Condition": {"Bool": {"aws:SecureTransport": "false"}}}]})
BLOCKED = {"blockPublicAcls": True, "blockPublicPolicy": True, "ignorePublicAcls": True, "restrictPublicBuckets": True}


def store(**overrides: dict | None) -> list[Res]:
    """A bucket with every companion modelplane's ModelStore creates; `overrides` replace or drop (None) one."""
    props = {
        PAB: {"bucket": "b-123", **BLOCKED},
        SSE: {"bucket": "b-123", "rules": [{"applyServerSideEncryptionByDefault": {
            "sseAlgorithm": "aws:kms", "kmsMasterKeyId": "arn:aws:kms:us-east-1:1:key/k"}, "bucketKeyEnabled": True}]},
        POLICY: {"bucket": "b-123", "policy": TLS_ONLY},
        VERSIONING: {"bucket": "b-123", "versioningConfiguration": {"status": "Enabled"}},
    }
    for type_, value in overrides.items():
        props[{"pab": PAB, "sse": SSE, "policy": POLICY, "versioning": VERSIONING}[type_]] = value
    bucket = Res(BUCKET, "models-datasets", {"tags": {}}, parent=STORE)
    return [STORE, bucket, *(Res(t, "models-datasets", p, parent=STORE) for t, p in props.items() if p is not None)]


@pytest.mark.parametrize("policy", [S3_PUBLIC_ACCESS_BLOCKED, S3_KMS_ENCRYPTION, S3_TLS_ONLY, S3_VERSIONING_PRODUCTION])
def test_a_modelstore_bucket_complies(policy) -> None:
    assert stack_violations(policy, store(), production=True) == []


def test_public_access_block_with_a_flag_off_is_reported_on_the_block() -> None:
    found = stack_violations(S3_PUBLIC_ACCESS_BLOCKED, store(pab={"bucket": "b-123", **BLOCKED, "blockPublicAcls": False}))
    assert [u for u, _ in found] == [urn(PAB, "models-datasets")]
    assert "blockPublicAcls" in found[0][1] and "Fix:" in found[0][1]


def test_bucket_without_public_access_block_is_reported_on_the_bucket() -> None:
    found = stack_violations(S3_PUBLIC_ACCESS_BLOCKED, store(pab=None))
    assert [u for u, _ in found] == [urn(BUCKET, "models-datasets")]
    assert "no public access block" in found[0][1]


def test_public_canned_acl_is_reported() -> None:
    resources = [*store(), Res("aws:s3/bucketAcl:BucketAcl", "models-datasets", {"acl": "public-read"}, parent=STORE)]
    found = stack_violations(S3_PUBLIC_ACCESS_BLOCKED, resources)
    assert len(found) == 1 and "public-read" in found[0][1]


def test_companions_follow_property_dependencies_over_names() -> None:
    # Under `pulumi preview` the engine links companions by dependency; a differently named block still counts.
    bucket = Res(BUCKET, "logs", {})
    block = Res(PAB, "logs-block", dict(BLOCKED), deps={"bucket": [bucket]})
    assert stack_violations(S3_PUBLIC_ACCESS_BLOCKED, [bucket, block]) == []
    other = Res(BUCKET, "other", {})
    stolen = Res(PAB, "logs", dict(BLOCKED), deps={"bucket": [other]})
    assert [u for u, _ in stack_violations(S3_PUBLIC_ACCESS_BLOCKED, [bucket, other, stolen])] == [urn(BUCKET, "logs")]


def test_companions_match_explicit_bucket_names() -> None:
    bucket = Res(BUCKET, "logs", {"bucket": "acme-logs"})
    block = Res(PAB, "logs-pab", {"bucket": "acme-logs", **BLOCKED})
    assert stack_violations(S3_PUBLIC_ACCESS_BLOCKED, [bucket, block]) == []


@pytest.mark.parametrize("sse", [
    None,
    {"rules": [{"applyServerSideEncryptionByDefault": {"sseAlgorithm": "AES256"}}]},
])
def test_bucket_without_sse_kms_is_reported(sse) -> None:
    found = stack_violations(S3_KMS_ENCRYPTION, store(sse=sse))
    assert [u for u, _ in found] == [urn(BUCKET, "models-datasets")]
    assert "aws:kms" in found[0][1]


def test_inline_sse_kms_on_the_bucket_complies() -> None:
    bucket = Res(BUCKET, "legacy", {"serverSideEncryptionConfiguration": {"rule": {
        "applyServerSideEncryptionByDefault": {"sseAlgorithm": "aws:kms"}}}})
    assert stack_violations(S3_KMS_ENCRYPTION, [bucket]) == []


@pytest.mark.parametrize("policy", [
    None,
    {"policy": json.dumps({"Statement": [{"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::1:root"},
                                          "Action": "s3:GetObject", "Resource": "*"}]})},
])
def test_bucket_accepting_plain_http_is_reported(policy) -> None:
    found = stack_violations(S3_TLS_ONLY, store(policy=policy))
    assert [u for u, _ in found] == [urn(BUCKET, "models-datasets")]
    assert "aws:SecureTransport" in found[0][1]


def test_unversioned_bucket_is_reported_only_in_production() -> None:
    assert stack_violations(S3_VERSIONING_PRODUCTION, store(versioning=None), production=False) == []
    found = stack_violations(S3_VERSIONING_PRODUCTION, store(versioning=None), production=True)
    assert [u for u, _ in found] == [urn(BUCKET, "models-datasets")]


def test_suspended_versioning_is_reported_in_production() -> None:
    suspended = {"bucket": "b-123", "versioningConfiguration": {"status": "Suspended"}}
    assert stack_violations(S3_VERSIONING_PRODUCTION, store(versioning=suspended), production=True)


def test_production_falls_back_to_the_stack_name_when_the_stack_config_is_silent() -> None:
    assert stack_violations(S3_VERSIONING_PRODUCTION, store(versioning=None), stack="prod")
    assert not stack_violations(S3_VERSIONING_PRODUCTION, store(versioning=None), stack="dev")
    assert stack_violations(S3_VERSIONING_PRODUCTION, store(versioning=None), stack="live",
                            config={"productionStacks": ["live"]})


def test_policy_config_production_overrides_the_stack_config() -> None:
    assert stack_violations(S3_VERSIONING_PRODUCTION, store(versioning=None), production=False,
                            config={"production": True})
