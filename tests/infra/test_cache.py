"""Cache: encrypted Redis, generated AUTH token in Secrets Manager, open only to the cluster."""

import pulumi
import pytest

from infra.aws.cache import Cache, CacheArgs
from infra.review.engine import Graph
from tests.support.graph import assert_count, assert_has_props


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
    from tests.support.graph import render_variant

    graph = render_variant("dev", {"modelplane:cache": {"enabled": False}})
    assert_count(graph, "aws:elasticache/replicationGroup:ReplicationGroup", 0)


@pytest.mark.parametrize(("args", "prop"), [
    ({"automatic_failover": True, "num_nodes": 1}, "num_nodes"),
    ({"multi_az": True}, "multi_az"),
    ({"num_nodes": 7}, "num_nodes"),
])
def test_cache_args_are_validated(args: dict, prop: str, mocked_runtime: None) -> None:
    with pytest.raises(pulumi.InputPropertiesError) as info:
        Cache("bad", CacheArgs(vpc_id="vpc-1", subnet_ids=["s"], **args))
    assert prop in {d["property_path"] for d in info.value.errors}
