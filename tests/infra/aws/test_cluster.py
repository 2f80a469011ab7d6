"""Cluster: private endpoint, encryption, logs, access entries, add-ons, node groups."""

import json
from typing import Any

from infra.aws.cluster import Cluster
from infra.config.cluster import ClusterConfig, NodePoolConfig
from infra.review.engine import render_program
from infra.review.graph import Graph
from infra.versions import EKS_ADDONS, EKS_DEFAULT_VERSION
from tests.support.graph import assert_all_have_props, assert_count, assert_has_props, matches, render_variant

SYSTEM_POOL = {"name": "system", "instanceTypes": ["m7i.large"], "minSize": 1, "desiredSize": 1, "maxSize": 2}
"""A minimal `modelplane:nodePools` entry."""


DEPLOYER = "arn:aws:iam::123456789012:role/deployer"
"""The `cluster.deployerRoleArn` every direct render uses (the key is required)."""


def _render(section: dict[str, Any], *, pools: list[dict[str, Any]] | None = None) -> Graph:
    config = ClusterConfig.model_validate({"deployerRoleArn": DEPLOYER, **section})
    node_pools = [NodePoolConfig.model_validate(p) for p in pools or [SYSTEM_POOL]]
    return render_program("test", lambda: Cluster(
        "eks", config, node_pools=node_pools, cluster_name="c", subnet_ids=["subnet-node-a", "subnet-node-b"],
        control_plane_subnet_ids=["subnet-cp-a", "subnet-cp-b"], deletion_protection=False,
    ) and None)


def test_cluster_defaults() -> None:
    graph = _render({})
    assert_has_props(graph, "aws:eks/cluster:Cluster", {
        "name": "c", "version": EKS_DEFAULT_VERSION, "deletionProtection": False,
        "enabledClusterLogTypes": ["api", "audit", "authenticator"],
        "vpcConfig": {"endpointPrivateAccess": True, "endpointPublicAccess": False},
    })
    assert "publicAccessCidrs" not in graph.one("aws:eks/cluster:Cluster").inputs["vpcConfig"]
    assert_has_props(graph, "aws:cloudwatch/logGroup:LogGroup", {"name": "/aws/eks/c/cluster", "retentionInDays": 90})
    assert_has_props(graph, "aws:kms/key:Key", {"deletionWindowInDays": 30, "enableKeyRotation": True})
    [entry] = graph.of_type("aws:eks/accessEntry:AccessEntry")
    assert entry.inputs["principalArn"] == DEPLOYER
    assert_has_props(graph, "aws:ec2/launchTemplate:LaunchTemplate", {"blockDeviceMappings": [{"ebs": {"volumeSize": 50}}]})


def test_control_plane_and_nodes_use_their_own_subnets() -> None:
    graph = _render({})
    assert_has_props(graph, "aws:eks/cluster:Cluster", {"vpcConfig": {"subnetIds": ["subnet-cp-a", "subnet-cp-b"]}})
    assert_all_have_props(graph, "aws:eks/nodeGroup:NodeGroup", {"subnetIds": ["subnet-node-a", "subnet-node-b"]})


def test_public_access_cidrs_render_as_strings_only_with_a_public_endpoint() -> None:
    graph = _render({"endpointPublicAccess": True, "publicAccessCidrs": ["52.94.76.0/24"]})
    assert_has_props(graph, "aws:eks/cluster:Cluster", {"vpcConfig": {"publicAccessCidrs": ["52.94.76.0/24"]}})


def test_secrets_key_deletion_window_comes_from_the_section() -> None:
    graph = _render({"kmsDeletionWindowDays": 7})
    assert_has_props(graph, "aws:kms/key:Key", {"deletionWindowInDays": 7})


def test_prod_api_endpoint_is_private_only(prod: Graph) -> None:
    cluster = prod.one("aws:eks/cluster:Cluster")
    assert cluster.inputs["vpcConfig"]["endpointPrivateAccess"] is True
    assert cluster.inputs["vpcConfig"]["endpointPublicAccess"] is False
    assert "publicAccessCidrs" not in cluster.inputs["vpcConfig"]


def test_dev_endpoint_is_private_like_staging_and_prod(dev: Graph) -> None:
    cluster = dev.one("aws:eks/cluster:Cluster")
    assert matches({"endpointPrivateAccess": True, "endpointPublicAccess": False}, cluster.inputs["vpcConfig"])
    assert "publicAccessCidrs" not in cluster.inputs["vpcConfig"]


def test_prod_deployer_role_gets_its_own_cluster_admin_access_entry(prod: Graph) -> None:
    deployer = "arn:aws:iam::123456789012:role/modelplane-deployer"
    [entry] = [e for e in prod.of_type("aws:eks/accessEntry:AccessEntry") if e.inputs["principalArn"] == deployer]
    assert entry.name == "cluster-deployer" and entry.inputs["type"] == "STANDARD"
    [association] = [a for a in prod.of_type("aws:eks/accessPolicyAssociation:AccessPolicyAssociation")
                     if a.inputs["principalArn"] == deployer]
    assert association.inputs["policyArn"] == "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"
    assert association.inputs["accessScope"] == {"type": "cluster"}


def test_secrets_are_envelope_encrypted_with_a_rotating_key(prod: Graph) -> None:
    cluster = prod.one("aws:eks/cluster:Cluster")
    encryption = cluster.inputs["encryptionConfig"]
    assert encryption["resources"] == ["secrets"]
    key_arn = encryption["provider"]["keyArn"]
    assert key_arn.startswith("arn:aws:kms:")
    key = prod.one("aws:kms/key:Key", "cluster-secrets")
    assert key.inputs["enableKeyRotation"] is True


def test_control_plane_logs_include_api_audit_authenticator(dev: Graph) -> None:
    logs = set(dev.one("aws:eks/cluster:Cluster").inputs["enabledClusterLogTypes"])
    assert {"api", "audit", "authenticator"} <= logs
    assert_has_props(dev, "aws:cloudwatch/logGroup:LogGroup",
                     {"name": "/aws/eks/modelplane-dev/cluster", "retentionInDays": 30})


def test_api_authentication_mode_without_creator_admin(prod: Graph) -> None:
    assert_has_props(prod, "aws:eks/cluster:Cluster", {"accessConfig": {
        "authenticationMode": "API", "bootstrapClusterCreatorAdminPermissions": False}})


def test_admin_roles_get_access_entries_with_cluster_admin_policy(prod: Graph) -> None:
    assert_has_props(prod, "aws:eks/accessEntry:AccessEntry",
                     {"principalArn": "arn:aws:iam::123456789012:role/platform-admin", "type": "STANDARD"})
    assert_has_props(prod, "aws:eks/accessPolicyAssociation:AccessPolicyAssociation", {
        "policyArn": "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy",
        "accessScope": {"type": "cluster"}})


def test_version_is_pinned_from_config_and_standard_support_only(prod: Graph) -> None:
    assert_has_props(prod, "aws:eks/cluster:Cluster", {"version": "1.35", "upgradePolicy": {"supportType": "STANDARD"}})


def test_prod_has_deletion_protection_and_dev_does_not(prod: Graph, dev: Graph) -> None:
    assert prod.one("aws:eks/cluster:Cluster").inputs["deletionProtection"] is True
    assert dev.one("aws:eks/cluster:Cluster").inputs["deletionProtection"] is False


def test_five_managed_addons(prod: Graph) -> None:
    assert_count(prod, "aws:eks/addon:Addon", 5)
    assert {a.inputs["addonName"] for a in prod.of_type("aws:eks/addon:Addon")} == set(EKS_ADDONS)


def test_vpc_cni_and_ebs_csi_use_their_own_pod_identity_roles(prod: Graph) -> None:
    by_name = {a.inputs["addonName"]: a for a in prod.of_type("aws:eks/addon:Addon")}
    assert by_name["vpc-cni"].inputs["podIdentityAssociations"][0]["serviceAccount"] == "aws-node"
    assert by_name["aws-ebs-csi-driver"].inputs["podIdentityAssociations"][0]["serviceAccount"] == "ebs-csi-controller-sa"
    node_policies = {a.inputs["policyArn"] for a in prod.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
                     if a.name.startswith("cluster-node-")}
    assert not any("CNI" in arn for arn in node_policies)


def test_system_node_group_is_on_demand_al2023_and_labelled(prod: Graph) -> None:
    assert_has_props(prod, "aws:eks/nodeGroup:NodeGroup", {
        "capacityType": "ON_DEMAND", "amiType": "AL2023_x86_64_STANDARD",
        "labels": {"modelplane.io/pool": "system"},
        "scalingConfig": {"minSize": 3, "desiredSize": 3, "maxSize": 6},
    })


def test_node_launch_template_requires_imdsv2_and_encrypts_gp3_root(prod: Graph) -> None:
    assert_has_props(prod, "aws:ec2/launchTemplate:LaunchTemplate", {
        "metadataOptions": {"httpTokens": "required", "httpPutResponseHopLimit": 1, "httpEndpoint": "enabled"},
        "blockDeviceMappings": [{"deviceName": "/dev/xvda",
                                 "ebs": {"volumeType": "gp3", "encrypted": "true", "volumeSize": 100}}],
    })


def test_kubernetes_provider_targets_the_cluster_with_exec_auth(prod: Graph) -> None:
    provider = prod.one("pulumi:providers:kubernetes")
    assert provider.inputs["kubeconfig"] == "[secret]" or "get-token" in json.dumps(provider.inputs)
    namespaces = prod.of_type("kubernetes:core/v1:Namespace")
    assert namespaces and all(n.provider == provider.urn for n in namespaces)


def test_every_node_pool_gets_a_node_group() -> None:
    graph = render_variant("dev", {"modelplane:nodePools": [
        {"name": "system", "instanceTypes": ["t3.large"], "minSize": 1, "desiredSize": 1, "maxSize": 2},
        {"name": "batch", "instanceTypes": ["c7i.2xlarge"], "capacityType": "SPOT", "minSize": 0, "desiredSize": 0,
         "maxSize": 5},
    ]})
    assert_count(graph, "aws:eks/nodeGroup:NodeGroup", 2)
    assert_has_props(graph, "aws:eks/nodeGroup:NodeGroup", {"capacityType": "SPOT", "labels": {"modelplane.io/pool": "batch"}})
    assert_all_have_props(graph, "aws:ec2/launchTemplate:LaunchTemplate", {"metadataOptions": {"httpTokens": "required"}})


def test_control_plane_log_group_is_encrypted_with_a_key_only_cloudwatch_logs_may_use_for_it() -> None:
    graph = _render({})
    group = graph.one("aws:cloudwatch/logGroup:LogGroup")
    secrets_arn = graph.one("aws:eks/cluster:Cluster").inputs["encryptionConfig"]["provider"]["keyArn"]
    assert group.inputs["kmsKeyId"].startswith("arn:aws:kms:") and group.inputs["kmsKeyId"] != secrets_arn
    key = graph.one("aws:kms/key:Key", "eks-logs").inputs
    assert (key["enableKeyRotation"], key["deletionWindowInDays"]) == (True, 30)
    logs = next(s for s in json.loads(key["policy"])["Statement"] if s["Sid"] == "CloudWatchLogsEncrypts")
    assert logs["Principal"] == {"Service": "logs.us-east-1.amazonaws.com"}
    assert logs["Condition"] == {"ArnLike": {
        "kms:EncryptionContext:aws:logs:arn": "arn:aws:logs:us-east-1:123456789012:log-group:/aws/eks/c/cluster"}}
    assert_has_props(graph, "aws:kms/alias:Alias", {"name": "alias/c-eks-logs"})
