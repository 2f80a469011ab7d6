"""Cache: encrypted Redis, generated AUTH token in Secrets Manager, open only to the cluster."""

from typing import Any

from infra.aws.cache import Cache
from infra.config.storage import CacheConfig
from infra.review.engine import load_stack_config, render_program
from infra.review.graph import Graph
from tests.support.graph import assert_count, assert_has_props, render_variant

REPLICATION_GROUP = "aws:elasticache/replicationGroup:ReplicationGroup"


def _render(section: dict[str, Any]) -> Graph:
    config = CacheConfig.model_validate(section)
    return render_program("test", lambda: Cache(
        "redis", config, vpc_id="vpc-1", subnet_ids=["subnet-a", "subnet-b"], allowed_security_group_ids=["sg-eks"],
        protect=False,
    ) and None)


def test_cache_defaults() -> None:
    graph = _render({})
    assert_has_props(graph, REPLICATION_GROUP, {
        "engine": "redis", "engineVersion": "7.1", "nodeType": "cache.t4g.small", "numCacheClusters": 1,
        "automaticFailoverEnabled": False, "multiAzEnabled": False, "snapshotRetentionLimit": 0, "port": 6379,
        "transitEncryptionEnabled": True, "atRestEncryptionEnabled": True,
    })
    assert_has_props(graph, "aws:kms/key:Key", {"deletionWindowInDays": 30, "enableKeyRotation": True})
    assert_has_props(graph, "aws:elasticache/subnetGroup:SubnetGroup", {"subnetIds": ["subnet-a", "subnet-b"]})
    assert_has_props(graph, "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule",
                     {"referencedSecurityGroupId": "sg-eks", "fromPort": 6379, "toPort": 6379})


def test_replication_settings_come_from_the_section() -> None:
    graph = _render({"nodeType": "cache.r7g.large", "numNodes": 3, "automaticFailover": True, "multiAz": True,
                     "engineVersion": "7.0", "snapshotRetentionDays": 5})
    assert_has_props(graph, REPLICATION_GROUP, {
        "nodeType": "cache.r7g.large", "numCacheClusters": 3, "automaticFailoverEnabled": True, "multiAzEnabled": True,
        "engineVersion": "7.0", "snapshotRetentionLimit": 5})


def test_prod_redis_is_encrypted_authenticated_and_multi_az(prod: Graph) -> None:
    group = prod.one("aws:elasticache/replicationGroup:ReplicationGroup")
    assert group.inputs["transitEncryptionEnabled"] is True
    assert group.inputs["atRestEncryptionEnabled"] is True
    assert group.inputs["kmsKeyId"].startswith("arn:aws:kms:")
    assert group.inputs["authToken"] == "[secret]"
    assert group.inputs["automaticFailoverEnabled"] is True
    assert group.inputs["multiAzEnabled"] is True
    assert group.inputs["numCacheClusters"] >= 2
    assert group.inputs["snapshotRetentionLimit"] == 7


def test_dev_redis_is_a_single_node_without_failover(dev: Graph) -> None:
    assert_has_props(dev, "aws:elasticache/replicationGroup:ReplicationGroup", {
        "numCacheClusters": 1, "automaticFailoverEnabled": False, "multiAzEnabled": False,
        "transitEncryptionEnabled": True, "snapshotRetentionLimit": 0})


def test_auth_token_is_kept_in_secrets_manager_and_never_in_plain_text(prod: Graph) -> None:
    version = prod.one("aws:secretsmanager/secretVersion:SecretVersion")
    assert version.inputs["secretString"] == "[secret]"
    assert "offline-" not in prod.to_json()
    assert prod.one("aws:secretsmanager/secret:Secret").inputs["kmsKeyId"].startswith("arn:aws:kms:")


def test_security_group_admits_6379_only_from_the_cluster(prod: Graph) -> None:
    cluster_sg = "sg-"
    rules = [r for r in prod.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
             if r.parent.endswith("::cache")]
    assert len(rules) == 1
    rule = rules[0].inputs
    assert (rule["fromPort"], rule["toPort"], rule["ipProtocol"]) == (6379, 6379, "tcp")
    assert rule["referencedSecurityGroupId"].startswith(cluster_sg)
    assert "cidrIpv4" not in rule


def test_cache_lives_in_the_private_subnets(prod: Graph) -> None:
    private = {s.urn for s in prod.of_type("aws:ec2/subnet:Subnet") if "private" in s.name}
    assert len(private) == 3
    assert len(prod.one("aws:elasticache/subnetGroup:SubnetGroup").inputs["subnetIds"]) == 3


def test_cache_can_be_disabled() -> None:
    # The recommendation processor and service keep their features in this Redis: a stack without it has neither.
    services = load_stack_config("dev")["modelplane:inference"]["services"]
    graph = render_variant("dev", {"modelplane:cache": {"enabled": False}, "modelplane:recommend": {"enabled": False},
                                   "modelplane:inference": {"services": [
                                       s for s in services if s.get("runtime") != "recommend"]}})
    assert_count(graph, "aws:elasticache/replicationGroup:ReplicationGroup", 0)


def test_cache_key_deletion_window_comes_from_the_section() -> None:
    assert_has_props(_render({"kmsDeletionWindowDays": 7}), "aws:kms/key:Key", {"deletionWindowInDays": 7})
