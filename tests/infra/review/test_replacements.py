"""Replace-aware `modelplane diff`: replace-forcing properties, rejected transitions, placeholders, exit codes."""

import json
from pathlib import Path

import pytest

from infra.config.errors import ConfigError
from infra.review import diff as diffs
from infra.review.engine import load_stack_config
from infra.review.graph import Graph, Resource
from infra.review.replacements import forces_replacement, rejected
from tests.policies.helpers import edit, git, modelplane, scratch_copy

SUBNET = "aws:ec2/subnet:Subnet"
EKS = "aws:eks/cluster:Cluster"


def resource(name: str, type_: str, inputs: dict, parent: str = "") -> Resource:
    return Resource(urn=f"urn:pulumi:dev::modelplane::{type_}::{name}", type=type_, name=name, parent=parent,
                    provider="", inputs=inputs)


@pytest.mark.parametrize(("type_", "path", "replaces"), [
    (SUBNET, "cidrBlock", True),
    (SUBNET, "availabilityZone", True),
    (SUBNET, "mapPublicIpOnLaunch", False),
    (SUBNET, 'tags["Name"]', False),
    (EKS, "version", False),
    (EKS, "roleArn", True),
    (EKS, "kubernetesNetworkConfig.serviceIpv4Cidr", True),
    ("kubernetes:apps/v1:Deployment", "spec.selector.matchLabels.app", True),
    ("kubernetes:apps/v1:Deployment", "spec.replicas", False),
    ("kubernetes:core/v1:Service", "spec.clusterIP", True),
    ("kubernetes:batch/v1:Job", "spec.template.spec.containers[0].image", True),
    ("kubernetes:core/v1:Namespace", "metadata.name", True),
    ("kubernetes:core/v1:Namespace", "metadata.labels.team", False),
    ("kubernetes:helm.sh/v3:Release", "metadata.name", False),
])
def test_replace_forcing_properties_follow_the_provider_schemas(type_: str, path: str, replaces: bool) -> None:
    assert (forces_replacement(type_, path) is not None) is replaces


NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
CACHE = "aws:elasticache/replicationGroup:ReplicationGroup"
MSK = "aws:msk/cluster:Cluster"
OPENSEARCH = "aws:opensearch/domain:Domain"


@pytest.mark.parametrize(("type_", "old", "new"), [
    (NODE_GROUP, {"instanceTypes": ["m7i.large"]}, {"instanceTypes": ["m7i.xlarge"]}),
    (NODE_GROUP, {"subnetIds": ["subnet-a", "subnet-b"]}, {"subnetIds": ["subnet-a", "subnet-c"]}),
    (NODE_GROUP, {"launchTemplate": {"id": "lt-1", "version": "1"}}, {"launchTemplate": {"id": "lt-2", "version": "1"}}),
    (NODE_GROUP, {"capacityType": "ON_DEMAND"}, {"capacityType": "SPOT"}),
    (CACHE, {"atRestEncryptionEnabled": True}, {"atRestEncryptionEnabled": False}),
    (CACHE, {"subnetGroupName": "cache-a"}, {"subnetGroupName": "cache-b"}),
    (CACHE, {"port": 6379}, {"port": 6380}),
    ("aws:elasticache/subnetGroup:SubnetGroup", {"name": "cache-a"}, {"name": "cache-b"}),
    ("aws:elasticache/parameterGroup:ParameterGroup", {"family": "redis7"}, {"family": "valkey8"}),
    (MSK, {"brokerNodeGroupInfo": {"clientSubnets": ["subnet-a"]}}, {"brokerNodeGroupInfo": {"clientSubnets": ["subnet-b"]}}),
    (MSK, {"clusterName": "events"}, {"clusterName": "events-2"}),
    (MSK, {"encryptionInfo": {"encryptionAtRestKmsKeyArn": "arn:k1"}},
     {"encryptionInfo": {"encryptionAtRestKmsKeyArn": "arn:k2"}}),
    (MSK, {}, {"encryptionInfo": {"encryptionInTransit": {"clientBroker": "TLS"}}}),
    ("aws:msk/configuration:Configuration", {"kafkaVersions": ["3.8.x"]}, {"kafkaVersions": ["3.9.x"]}),
    (OPENSEARCH, {"domainName": "logs"}, {"domainName": "logs-2"}),
    (OPENSEARCH, {"encryptAtRest": {"enabled": True, "kmsKeyId": "k1"}}, {"encryptAtRest": {"enabled": True, "kmsKeyId": "k2"}}),
    (OPENSEARCH, {"vpcOptions": {"subnetIds": ["subnet-a"]}}, {}),
])
def test_a_force_new_change_to_each_stateful_type_shows_as_a_replacement(type_: str, old: dict, new: dict) -> None:
    found = diffs.diff_graphs(Graph("dev", [resource("r", type_, old)]), Graph("dev", [resource("r", type_, new)]),
                              stack="dev", base="main")
    [change] = found.changes
    assert change.op == "replace", change
    assert change.replace_because and "terraform-provider-aws internal/service/" in change.replace_because[0]
    assert any(line == f"  +- {type_.rsplit(':', 1)[-1]} r" for _, line in diffs.change_lines(found))


@pytest.mark.parametrize(("type_", "path", "old", "new", "replaces"), [
    (CACHE, "engineVersion", "7.1", "7.0", True),
    (CACHE, "engineVersion", "7.0", "7.1", False),
    (CACHE, "engine", "valkey", "redis", True),
    (CACHE, "engine", "redis", "valkey", False),
    (MSK, "kafkaVersion", "3.9.x", "3.8.x", True),
    (MSK, "kafkaVersion", "3.8.x", "3.9.x", False),
    (OPENSEARCH, "encryptAtRest.enabled", True, False, True),
    (OPENSEARCH, "encryptAtRest.enabled", False, True, False),
    (OPENSEARCH, "nodeToNodeEncryption.enabled", True, False, True),
    (OPENSEARCH, "advancedSecurityOptions.enabled", True, False, True),
])
def test_value_dependent_replacements_follow_the_provider_customize_diffs(
        type_: str, path: str, old: object, new: object, replaces: bool) -> None:
    source = forces_replacement(type_, path, old, new)
    assert (source is not None) is replaces, source
    assert source is None or "terraform-provider-aws internal/service/" in source


@pytest.mark.parametrize(("type_", "old", "new"), [
    (NODE_GROUP, {"scalingConfig": {"desiredSize": 2}}, {"scalingConfig": {"desiredSize": 3}}),
    (NODE_GROUP, {"launchTemplate": {"id": "lt-1", "version": "1"}}, {"launchTemplate": {"id": "lt-1", "version": "2"}}),
    (CACHE, {"nodeType": "cache.r7g.large"}, {"nodeType": "cache.r7g.xlarge"}),
    (CACHE, {"transitEncryptionEnabled": False}, {"transitEncryptionEnabled": True}),
    ("aws:elasticache/subnetGroup:SubnetGroup", {"subnetIds": ["subnet-a"]}, {"subnetIds": ["subnet-b"]}),
    (MSK, {"brokerNodeGroupInfo": {"instanceType": "kafka.m7g.large"}},
     {"brokerNodeGroupInfo": {"instanceType": "kafka.m7g.xlarge"}}),
    (MSK, {"numberOfBrokerNodes": 3}, {"numberOfBrokerNodes": 6}),
    (MSK, {"encryptionInfo": {"encryptionInTransit": {"clientBroker": "TLS"}}},
     {"encryptionInfo": {"encryptionInTransit": {"clientBroker": "TLS_PLAINTEXT"}}}),
    ("aws:msk/configuration:Configuration", {"serverProperties": "a=1"}, {"serverProperties": "a=2"}),
    (OPENSEARCH, {"clusterConfig": {"instanceCount": 2}}, {"clusterConfig": {"instanceCount": 3}}),
    (OPENSEARCH, {"vpcOptions": {"subnetIds": ["subnet-a"]}}, {"vpcOptions": {"subnetIds": ["subnet-b"]}}),
])
def test_an_updatable_change_to_each_stateful_type_stays_in_place(type_: str, old: dict, new: dict) -> None:
    found = diffs.diff_graphs(Graph("dev", [resource("r", type_, old)]), Graph("dev", [resource("r", type_, new)]),
                              stack="dev", base="main")
    assert [c.op for c in found.changes] == ["update"]


@pytest.mark.parametrize(("old", "new", "error"), [
    ("1.35", "1.34", "cannot downgrade"),
    ("1.34", "1.36", "one minor version at a time"),
    ("1.34", "1.35", None),
    ("1.35", "1.35", None),
])
def test_eks_version_transitions(old: str, new: str, error: str | None) -> None:
    found = rejected(EKS, {"version": old}, {"version": new})
    assert (error in found[0]) if error else not found, found


def test_elasticache_failover_needs_two_nodes() -> None:
    rg = "aws:elasticache/replicationGroup:ReplicationGroup"
    assert rejected(rg, {"numCacheClusters": 2, "automaticFailoverEnabled": True},
                    {"numCacheClusters": 1, "automaticFailoverEnabled": True})
    assert not rejected(rg, {"numCacheClusters": 2, "automaticFailoverEnabled": True},
                        {"numCacheClusters": 1, "automaticFailoverEnabled": False})


def test_a_replacement_names_its_cause_and_order_and_hides_placeholders() -> None:
    parent = "urn:pulumi:dev::modelplane::modelplane:network:Network::network"
    old = Graph("dev", [resource("network", "modelplane:network:Network", {}),
                        resource("private-a", SUBNET, {"cidrBlock": "10.20.0.0/19", "vpcId": "vpc-1"}, parent),
                        resource("addon", "aws:eks/addon:Addon", {"addonVersion": "default-for-1.35"})])
    new = Graph("dev", [resource("network", "modelplane:network:Network", {}),
                        resource("private-a", SUBNET, {"cidrBlock": "10.21.0.0/19", "vpcId": "vpc-1"}, parent),
                        resource("addon", "aws:eks/addon:Addon", {"addonVersion": "default-for-1.36"})])
    found = diffs.diff_graphs(old, new, stack="dev", base="main")
    assert {(c.op, c.name, c.component) for c in found.changes} == {("replace", "private-a", "network"),
                                                                    ("update", "addon", "")}
    lines = [line for _, line in diffs.change_lines(found)]
    assert "  +- Subnet private-a" in lines
    assert '      cidrBlock: "10.20.0.0/19" → "10.21.0.0/19" (forces replacement)' in lines
    assert any("create the new one" in line and "then delete the old one" in line for line in lines)
    assert "      addonVersion: (known after deploy) → (known after deploy)" in lines
    assert not [line for line in lines if "default-for" in line]


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A scratch git repo of the program with one commit: edits are made in the working tree and diffed against HEAD."""
    tree = scratch_copy(tmp_path_factory.mktemp("tree"))
    git(tree, "init", "--quiet", "--initial-branch=main")
    git(tree, "add", ".")
    git(tree, "commit", "--quiet", "-m", "base")
    return tree


def test_a_subnet_cidr_change_replaces_the_subnet(tree: Path) -> None:
    edit(tree / "stacks" / "Pulumi.dev.yaml", "10.20.32.0/19", "10.20.96.0/19")
    try:
        result = modelplane(tree, "diff", "--stack", "dev", "--json")
        text = modelplane(tree, "diff", "--stack", "dev", "--exit-code")
    finally:
        git(tree, "checkout", "--quiet", "--", "stacks")
    assert result.returncode == 0, result.stdout + result.stderr
    doc = json.loads(result.stdout)
    [subnet] = [c for c in doc["changes"] if c["type"] == SUBNET]
    assert (subnet["op"], subnet["name"], subnet["component"]) == ("replace", "network-private-us-east-1a", "network")
    assert subnet["replaceBecause"][0].startswith("cidrBlock (terraform-provider-aws")
    assert {"path": "cidrBlock", "kind": "change", "old": "10.20.32.0/19", "new": "10.20.96.0/19"} in subnet["changes"]
    assert not doc["rejected"]
    assert text.returncode == 3, text.stdout + text.stderr
    lines = text.stdout.splitlines()
    assert "  +- Subnet network-private-us-east-1a" in lines
    assert '      cidrBlock: "10.20.32.0/19" → "10.20.96.0/19" (forces replacement)' in lines


def test_an_eks_downgrade_is_an_error(tree: Path) -> None:
    edit(tree / "stacks" / "Pulumi.dev.yaml", 'version: "1.35"', 'version: "1.34"')
    try:
        result = modelplane(tree, "diff", "--stack", "dev")
    finally:
        git(tree, "checkout", "--quiet", "--", "stacks")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "error: version 1.35 → 1.34: EKS cannot downgrade a cluster" in result.stdout
    assert "rejected by the cloud" in result.stdout


def test_no_changes_exit_0_even_with_exit_code(tree: Path) -> None:
    result = modelplane(tree, "diff", "--stack", "local", "--exit-code")
    assert result.returncode == 0, result.stdout + result.stderr


def test_markdown_puts_the_signs_first_for_github_diff_colours() -> None:
    old = Graph("dev", [resource("a", SUBNET, {"cidrBlock": "10.0.0.0/24"})])
    new = Graph("dev", [resource("a", SUBNET, {"cidrBlock": "10.0.1.0/24"}), resource("b", "aws:s3/bucket:Bucket", {})])
    text = diffs.to_markdown(diffs.diff_graphs(old, new, stack="dev", base="main"))
    assert "\n+- Subnet a\n" in text and "\n+ Bucket b\n" in text and "(stack):" in text


def test_preview_exits_like_diff_on_a_transition_the_cloud_rejects(tree: Path) -> None:
    edit(tree / "stacks" / "Pulumi.dev.yaml", 'version: "1.35"', 'version: "1.34"')
    try:
        diff = modelplane(tree, "diff", "--stack", "dev")
        preview = modelplane(tree, "preview", "--stack", "dev", "--json")
    finally:
        git(tree, "checkout", "--quiet", "--", "stacks")
    assert diff.returncode == 1, diff.stdout + diff.stderr
    assert preview.returncode == diff.returncode, preview.stdout + preview.stderr
    doc = json.loads(preview.stdout)
    assert doc["passed"] is False and doc["stacks"][0]["policy"]["mandatory"] == 0
    assert any("EKS cannot downgrade a cluster" in line for line in doc["stacks"][0]["diff"]["rejected"])
    assert "error: rejected by the cloud: dev: Cluster" in preview.stderr


def test_engine_names_a_missing_stacks_dir(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"--stacks-dir: .*no-such is not a directory\. Fix: pass the folder"):
        load_stack_config("dev", tmp_path / "no-such")
