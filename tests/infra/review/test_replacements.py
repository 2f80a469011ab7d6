"""Replace-aware `modelplane diff`: replace-forcing properties, rejected transitions, placeholders, exit codes."""

import json
from pathlib import Path

import pytest

from infra.review import diff as diffs
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
