"""Replacements `modelplane diff` must not show as updates: a security group's description, a bucket's or log group's
name, a role's path, a KMS key's usage (terraform-provider-aws ForceNew), and the in-place fields beside them."""

import pytest

from infra.review.diff import change_lines, diff_graphs
from infra.review.graph import Graph, Resource
from infra.review.outputs import synthesize_outputs
from infra.review.replacements import forces_replacement

SG = "aws:ec2/securityGroup:SecurityGroup"


@pytest.mark.parametrize(("type_", "path", "replaces"), [
    (SG, "description", True),
    (SG, "vpcId", True),
    (SG, "ingress[0].fromPort", False),
    (SG, 'tags["Name"]', False),
    ("aws:s3/bucket:Bucket", "bucket", True),
    ("aws:s3/bucket:Bucket", "bucketPrefix", True),
    ("aws:s3/bucket:Bucket", "forceDestroy", False),
    ("aws:iam/role:Role", "path", True),
    ("aws:iam/role:Role", "name", True),
    ("aws:iam/role:Role", "description", False),
    ("aws:iam/role:Role", "assumeRolePolicy", False),
    ("aws:cloudwatch/logGroup:LogGroup", "name", True),
    ("aws:cloudwatch/logGroup:LogGroup", "retentionInDays", False),
    ("aws:cloudwatch/logGroup:LogGroup", "kmsKeyId", False),
    ("aws:kms/key:Key", "keyUsage", True),
    ("aws:kms/key:Key", "customerMasterKeySpec", True),
    ("aws:kms/key:Key", "enableKeyRotation", False),
    ("aws:kms/key:Key", "description", False),
])
def test_stateful_aws_types_replace_on_their_force_new_fields(type_: str, path: str, replaces: bool) -> None:
    assert (forces_replacement(type_, path, "a", "b") is not None) is replaces


def _graph(description: str) -> Graph:
    sg = Resource(urn=f"urn:pulumi:prod::modelplane::{SG}::cache-sg", type=SG, name="cache-sg", parent="", provider="",
                  inputs={"description": description, "vpcId": "vpc-1"})
    return Graph(stack="prod", resources=[sg])


def test_editing_a_security_group_description_is_a_replacement() -> None:
    diff = diff_graphs(_graph("Redis, only from the cluster"), _graph("Redis from the cluster"), stack="prod", base="HEAD")
    [change] = diff.changes
    assert change.op == "replace" and change.replace_because[0].startswith("description (terraform-provider-aws")
    lines = [line for _, line in change_lines(diff)]
    assert "  +- SecurityGroup cache-sg" in lines
    assert any("description:" in line and "(forces replacement)" in line for line in lines)


MSK = "aws:msk/cluster:Cluster"
INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"


def _stack(description: str) -> Graph:
    """A security group, the MSK cluster in it, a rule on it and a bucket nobody references; ids as the renderer
    makes them."""
    sg_id, _ = synthesize_outputs(SG, "streaming-sg", {"description": description}, "us-east-1")
    made = [
        (SG, "streaming-sg", {"description": description}),
        (MSK, "streaming-kafka", {"clusterName": "prod-streaming",
                                  "brokerNodeGroupInfo": {"securityGroups": [sg_id], "clientSubnets": ["subnet-a"]}}),
        (INGRESS, "streaming-from-cluster", {"securityGroupId": sg_id, "ipProtocol": "tcp", "fromPort": 9098}),
        ("aws:s3/bucket:Bucket", "models", {"forceDestroy": False}),
    ]
    return Graph(stack="prod", resources=[
        Resource(urn=f"urn:pulumi:prod::modelplane::{type_}::{name}", type=type_, name=name, parent="", provider="",
                 inputs=inputs) for type_, name, inputs in made])


def test_a_replacement_carries_to_what_references_the_replaced_resource() -> None:
    diff = diff_graphs(_stack("MSK from the cluster"), _stack("MSK, only from the cluster"), stack="prod", base="HEAD")
    ops = {change.name: change.op for change in diff.changes}
    assert ops == {"streaming-sg": "replace", "streaming-kafka": "replace", "streaming-from-cluster": "update"}
    assert diff.counts()["same"] == 1
    [kafka] = [c for c in diff.changes if c.name == "streaming-kafka"]
    assert kafka.replace_because[0].startswith("brokerNodeGroupInfo.securityGroups[0] (references SecurityGroup "
                                               "streaming-sg, replaced;")
    lines = [line for _, line in change_lines(diff)]
    assert any("brokerNodeGroupInfo.securityGroups[0]" in line and "→ (known after deploy) (forces replacement)" in line
               for line in lines)


def test_an_in_place_update_carries_nothing() -> None:
    before, after = _stack("MSK from the cluster"), _stack("MSK from the cluster")
    after.resources[0].inputs["tags"] = {"team": "ml"}
    diff = diff_graphs(before, after, stack="prod", base="HEAD")
    assert [(c.name, c.op) for c in diff.changes] == [("streaming-sg", "update")]
