"""The AWS side of logging in prod: KMS-encrypted log groups per namespace, a least-privilege shipper role, and a
private, encrypted OpenSearch domain."""

import json
from typing import Any

from infra import versions
from infra.review.graph import Graph
from tests.support.graph import assert_count, policy_statements, render_variant

LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
DOMAIN = "aws:opensearch/domain:Domain"
KMS_KEY = "aws:kms/key:Key"
NAMESPACES = {"inference", "training", "kube-system", "istio-system", "istio-ingress", "monitoring", "unmatched"}


def _ours(graph: Graph) -> list[dict[str, Any]]:
    return [r.inputs for r in graph.of_type(LOG_GROUP) if str(r.inputs.get("name", "")).startswith("/modelplane/")]


def _logs_key(graph: Graph) -> dict[str, Any]:
    keys = [r.inputs for r in graph.of_type(KMS_KEY) if r.name == "logs-kms"]
    assert len(keys) == 1
    return keys[0]


def test_one_log_group_per_namespace_with_retention_and_the_logs_key(prod: Graph) -> None:
    groups = _ours(prod)
    assert {g["name"].removeprefix("/modelplane/prod/") for g in groups} == NAMESPACES
    key_arns = {g["kmsKeyId"] for g in groups}
    assert len(key_arns) == 1 and next(iter(key_arns)).startswith("arn:aws:kms:us-east-1:")
    assert {g["retentionInDays"] for g in groups} == {365}


def test_logs_key_rotates_and_admits_cloudwatch_logs_for_our_groups_only(prod: Graph) -> None:
    key = _logs_key(prod)
    assert (key["enableKeyRotation"], key["deletionWindowInDays"]) == (True, 30)
    statements = {s["Sid"]: s for s in json.loads(key["policy"])["Statement"]}
    logs = statements["CloudWatchLogsEncrypts"]
    assert logs["Principal"] == {"Service": "logs.us-east-1.amazonaws.com"}
    assert set(logs["Action"]) == {"kms:Encrypt", "kms:Decrypt", "kms:ReEncryptFrom", "kms:ReEncryptTo",
                                   "kms:GenerateDataKey", "kms:GenerateDataKeyWithoutPlaintext", "kms:DescribeKey"}
    assert logs["Condition"]["ArnLike"]["kms:EncryptionContext:aws:logs:arn"].endswith(":log-group:/modelplane/prod/*")
    admin = statements["AccountAdministers"]
    assert admin["Principal"]["AWS"].endswith(":root")
    assert {"kms:PutKeyPolicy", "kms:ScheduleKeyDeletion", "kms:CreateGrant"} <= set(admin["Action"])


def test_fluent_bit_role_writes_only_to_its_groups_and_the_domain(prod: Graph) -> None:
    found = [s for urn, s in policy_statements(prod) if urn.endswith("::log-shipper-policy")]
    actions = sorted(a for s in found for a in s["Action"])
    assert actions == ["es:ESHttpGet", "es:ESHttpPost", "es:ESHttpPut", "logs:CreateLogStream", "logs:PutLogEvents"]
    # GET (the index lifecycle Job reading its policy) reaches the ISM policies only, never the log indices.
    [read] = [s for s in found if "es:ESHttpGet" in s["Action"]]
    assert read["Resource"] == "arn:aws:es:us-east-1:123456789012:domain/modelplane-prod-logs/_plugins/_ism/policies/*"
    logs = next(s for s in found if "logs:PutLogEvents" in s["Action"])
    assert all(":log-group:/modelplane/prod/" in arn for arn in logs["Resource"])
    assert len(logs["Resource"]) == 2 * len(NAMESPACES)
    search = next(s for s in found if "es:ESHttpPost" in s["Action"])
    assert search["Resource"] == "arn:aws:es:us-east-1:123456789012:domain/modelplane-prod-logs/*"
    association = [r.inputs for r in prod.of_type("aws:eks/podIdentityAssociation:PodIdentityAssociation")
                   if r.name == "log-shipper-association"]
    assert [(a["namespace"], a["serviceAccount"]) for a in association] == [("logging", "fluent-bit")]


def test_opensearch_domain_is_private_encrypted_and_zone_aware_in_prod(prod: Graph) -> None:
    (domain,) = [r.inputs for r in prod.of_type(DOMAIN)]
    assert domain["engineVersion"] == versions.OPENSEARCH_ENGINE_VERSION
    assert domain["clusterConfig"] == {
        "instanceType": "r7g.large.search", "instanceCount": 3, "dedicatedMasterEnabled": True,
        "dedicatedMasterType": "m7g.large.search", "dedicatedMasterCount": 3, "zoneAwarenessEnabled": True,
        "zoneAwarenessConfig": {"availabilityZoneCount": 3}}
    assert len(domain["vpcOptions"]["subnetIds"]) == 3 and len(domain["vpcOptions"]["securityGroupIds"]) == 1
    assert domain["encryptAtRest"] == {"enabled": True, "kmsKeyId": next(iter({g["kmsKeyId"] for g in _ours(prod)}))}
    assert domain["nodeToNodeEncryption"] == {"enabled": True}
    assert domain["domainEndpointOptions"] == {"enforceHttps": True, "tlsSecurityPolicy": "Policy-Min-TLS-1-2-PFS-2023-10"}
    security = domain["advancedSecurityOptions"]
    assert (security["enabled"], security["internalUserDatabaseEnabled"]) == (True, False)
    assert security["masterUserOptions"]["masterUserArn"].startswith("arn:aws:iam::123456789012:role/log-shipper-role")
    assert domain["ebsOptions"] == {"ebsEnabled": True, "volumeType": "gp3", "volumeSize": 200}


def test_opensearch_admits_only_https_from_the_cluster(prod: Graph) -> None:
    rules = [r.inputs for r in prod.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
             if r.name.startswith("log-search-from-")]
    assert [(r["fromPort"], r["toPort"], r["ipProtocol"]) for r in rules] == [(443, 443, "tcp")]
    assert rules[0]["referencedSecurityGroupId"].startswith("sg-") and "cidrIpv4" not in rules[0]


def test_dev_has_log_groups_but_no_domain(dev: Graph) -> None:
    assert_count(dev, DOMAIN, 0)
    assert {g["retentionInDays"] for g in _ours(dev)} == {14}
    assert not [s for urn, s in policy_statements(dev) if urn.endswith("::log-shipper-policy") and
                any(a.startswith("es:") for a in s["Action"])]


def test_dev_logs_are_encrypted_with_the_logs_key_too(dev: Graph) -> None:
    groups = _ours(dev)
    key_arns = {g["kmsKeyId"] for g in groups}
    assert groups and len(key_arns) == 1 and next(iter(key_arns)).startswith("arn:aws:kms:us-east-1:")
    _logs_key(dev)


def test_logging_off_renders_nothing_of_it() -> None:
    graph = render_variant("dev", {"modelplane:logging": {"enabled": False}})
    assert _ours(graph) == []
    assert not [r for r in graph.resources if "log-shipper" in r.urn or "fluent-bit" in r.urn]
    # Only the groups of other components (EKS control plane, flow logs, MSK brokers) remain.
    assert not [r for r in graph.of_type(LOG_GROUP) if "modelplane:logging:LogStore$" in r.urn]
    assert {"cluster-control-plane", "network-flow-logs"} <= {r.name for r in graph.of_type(LOG_GROUP)}
