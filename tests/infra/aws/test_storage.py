"""ModelStore: private, encrypted, versioned, TLS-only buckets with lifecycle rules and scoped grants."""

import json
from typing import Any

import pulumi

from infra.aws.storage import ModelStore
from infra.config.storage import StorageConfig
from infra.review.engine import render_program
from infra.review.graph import Graph
from tests.support.graph import assert_all_have_props, assert_count, assert_has_props, matches, policy_statements

LIFECYCLE = "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration"


def _render(section: dict[str, Any]) -> Graph:
    config = StorageConfig.model_validate(section)
    return render_program("test", lambda: ModelStore("store", config, protect=False) and None)


def test_model_store_defaults() -> None:
    graph = _render({})
    assert_all_have_props(graph, "aws:s3/bucket:Bucket", {"forceDestroy": False})
    assert_has_props(graph, "aws:kms/key:Key", {"deletionWindowInDays": 30, "enableKeyRotation": True})
    abort = {"id": "abort-incomplete-multipart", "abortIncompleteMultipartUpload": {"daysAfterInitiation": 7}}
    expire = {"id": "expire-noncurrent-checkpoints", "noncurrentVersionExpiration": {"noncurrentDays": 30}}
    assert matches({"rules": [abort]}, graph.one(LIFECYCLE, "store-datasets").inputs)
    assert matches({"rules": [abort, expire]}, graph.one(LIFECYCLE, "store-checkpoints").inputs)


def test_lifecycle_days_and_force_destroy_come_from_the_section() -> None:
    graph = _render({"forceDestroy": True, "noncurrentVersionExpirationDays": 3, "abortIncompleteMultipartDays": 1,
                     "kmsDeletionWindowDays": 7})
    assert_all_have_props(graph, "aws:s3/bucket:Bucket", {"forceDestroy": True})
    assert_has_props(graph, LIFECYCLE, {"rules": [{"abortIncompleteMultipartUpload": {"daysAfterInitiation": 1}},
                                                  {"noncurrentVersionExpiration": {"noncurrentDays": 3}}]})
    assert_has_props(graph, "aws:kms/key:Key", {"deletionWindowInDays": 7})


def test_three_buckets_datasets_checkpoints_models(prod: Graph) -> None:
    buckets = [b for b in prod.of_type("aws:s3/bucket:Bucket") if b.name != "deployer-source"]  # + in-VPC deploy sources
    assert len(buckets) == 3
    roles = {b.inputs["tags"]["modelplane.io/bucket-role"] for b in buckets}
    assert roles == {"datasets", "checkpoints", "models"}


def test_every_bucket_blocks_all_public_access(prod: Graph) -> None:
    assert_count(prod, "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", 4)
    assert_all_have_props(prod, "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", {
        "blockPublicAcls": True, "blockPublicPolicy": True, "ignorePublicAcls": True, "restrictPublicBuckets": True})


def test_every_bucket_uses_sse_kms_with_a_bucket_key(prod: Graph) -> None:
    sse = "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
    configs = assert_all_have_props(prod, sse, {"rules": [
        {"applyServerSideEncryptionByDefault": {"sseAlgorithm": "aws:kms"}, "bucketKeyEnabled": True}]})
    assert len(configs) == 4
    for config in configs:
        assert config.inputs["rules"][0]["applyServerSideEncryptionByDefault"]["kmsMasterKeyId"].startswith("arn:aws:kms:")


def test_every_bucket_is_versioned(prod: Graph) -> None:
    assert_count(prod, "aws:s3/bucketVersioning:BucketVersioning", 4)
    assert_all_have_props(prod, "aws:s3/bucketVersioning:BucketVersioning", {"versioningConfiguration": {"status": "Enabled"}})


def test_every_bucket_policy_denies_insecure_transport(prod: Graph) -> None:
    policies = prod.of_type("aws:s3/bucketPolicy:BucketPolicy")
    assert len(policies) == 4
    for policy in policies:
        statement = json.loads(policy.inputs["policy"])["Statement"][0]
        assert statement["Effect"] == "Deny"
        assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_acls_are_disabled(prod: Graph) -> None:
    assert_all_have_props(prod, "aws:s3/bucketOwnershipControls:BucketOwnershipControls",
                          {"rule": {"objectOwnership": "BucketOwnerEnforced"}})


def test_lifecycle_aborts_multipart_and_expires_noncurrent_checkpoints(prod: Graph) -> None:
    rules_by_bucket = {r.name: r.inputs["rules"] for r in prod.of_type(
        "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration")}
    assert all(any(rule["id"] == "abort-incomplete-multipart" for rule in rules) for rules in rules_by_bucket.values())
    checkpoint_rules = rules_by_bucket["models-checkpoints"]
    expiring = [r for r in checkpoint_rules if "noncurrentVersionExpiration" in r]
    assert expiring[0]["noncurrentVersionExpiration"]["noncurrentDays"] == 30
    assert not any("noncurrentVersionExpiration" in r for r in rules_by_bucket["models-datasets"])


def test_dev_buckets_can_be_force_destroyed_but_prod_cannot(prod: Graph, dev: Graph) -> None:
    assert_all_have_props(dev, "aws:s3/bucket:Bucket", {"forceDestroy": True})
    # The in-VPC deployer's bucket only holds week-old copies of the repository: always force-destroyable.
    assert all(b.inputs["forceDestroy"] is (b.name == "deployer-source") for b in prod.of_type("aws:s3/bucket:Bucket"))


def test_trainer_grant_reads_datasets_and_writes_checkpoints_with_kms(prod: Graph) -> None:
    trainer = [s for urn, s in policy_statements(prod) if "trainer-policy" in urn]
    writes = [s for s in trainer if "s3:PutObject" in s["Action"]]
    assert {s["Resource"].split(":::")[1].split("-")[1] for s in writes} == {"checkpoints", "models"}
    assert any("kms:GenerateDataKey" in s["Action"] for s in trainer)
    reads = [s for s in trainer if s["Action"] == ["s3:GetObject", "s3:GetObjectVersion"]]
    assert [s["Resource"].split(":::")[1].split("-")[1] for s in reads] == ["datasets"]


def test_grant_prefix_limits_objects_and_listing(mocked_runtime: None) -> None:
    store = ModelStore("s", StorageConfig(), protect=False)
    grant = store.grant_read("models", prefix="llm/")
    resolved = []
    pulumi.Output.all(*grant.statements).apply(resolved.extend)
    # The mock engine resolves outputs as the program runs; wait for the pending RPCs.
    from pulumi.runtime.stack import wait_for_rpcs
    from pulumi.runtime.sync_await import _sync_await

    _sync_await(wait_for_rpcs())
    listing, objects, kms = resolved
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["llm/*"]}}
    assert objects["Resource"].endswith("/llm/*")
    assert kms["Action"] == ["kms:Decrypt"]
