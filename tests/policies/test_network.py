"""Network rules: open ingress (HTTPS to load balancers excepted) and IMDSv2."""

import pytest

from policies.rules.network import IMDSV2_REQUIRED, SG_NO_OPEN_INGRESS
from tests.policies.helpers import k8s, k8s_type, violations

SG = "aws:ec2/securityGroup:SecurityGroup"
RULE = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
LB_TAGS = {"tags": {"modelplane.io/load-balancer": "true"}}


def test_vpc_scoped_ingress_complies() -> None:
    props = {"ingress": [{"protocol": "tcp", "fromPort": 443, "toPort": 443, "cidrBlocks": ["10.0.0.0/16"]}]}
    assert violations(SG_NO_OPEN_INGRESS, SG, props) == []
    assert violations(SG_NO_OPEN_INGRESS, RULE, {"cidrIpv4": "10.0.0.0/16", "ipProtocol": "tcp",
                                                 "fromPort": 6379, "toPort": 6379}) == []


@pytest.mark.parametrize(("type_", "props"), [
    (SG, {"ingress": [{"protocol": "tcp", "fromPort": 22, "toPort": 22, "cidrBlocks": ["0.0.0.0/0"]}]}),
    (SG, {"ingress": [{"protocol": "-1", "fromPort": 0, "toPort": 0, "ipv6CidrBlocks": ["::/0"]}]}),
    (RULE, {"cidrIpv4": "0.0.0.0/0", "ipProtocol": "tcp", "fromPort": 443, "toPort": 443}),
    ("aws:ec2/securityGroupRule:SecurityGroupRule",
     {"type": "ingress", "protocol": "tcp", "fromPort": 80, "toPort": 80, "cidrBlocks": ["0.0.0.0/0"]}),
])
def test_internet_ingress_is_reported(type_, props) -> None:
    found = violations(SG_NO_OPEN_INGRESS, type_, props, name="web")
    assert len(found) == 1 and "'web'" in found[0] and "whole internet" in found[0]


def test_https_to_a_tagged_load_balancer_complies() -> None:
    props = {"cidrIpv4": "0.0.0.0/0", "ipProtocol": "tcp", "fromPort": 443, "toPort": 443, **LB_TAGS}
    assert violations(SG_NO_OPEN_INGRESS, RULE, props) == []


def test_load_balancer_tag_does_not_excuse_other_ports() -> None:
    props = {"ingress": [{"protocol": "tcp", "fromPort": 80, "toPort": 80, "cidrBlocks": ["0.0.0.0/0"]}], **LB_TAGS}
    assert len(violations(SG_NO_OPEN_INGRESS, SG, props)) == 1


def test_egress_is_not_ingress() -> None:
    legacy = {"type": "egress", "protocol": "-1", "fromPort": 0, "toPort": 0, "cidrBlocks": ["0.0.0.0/0"]}
    assert violations(SG_NO_OPEN_INGRESS, "aws:ec2/securityGroupRule:SecurityGroupRule", legacy) == []


LT = "aws:ec2/launchTemplate:LaunchTemplate"


def test_launch_template_with_imdsv2_complies() -> None:
    props = {"metadataOptions": {"httpEndpoint": "enabled", "httpTokens": "required", "httpPutResponseHopLimit": 1}}
    assert violations(IMDSV2_REQUIRED, LT, props) == []


@pytest.mark.parametrize(("options", "expected"), [
    ({}, "httpTokens is unset"),
    ({"httpTokens": "optional"}, "httpTokens is optional"),
    ({"httpTokens": "required", "httpPutResponseHopLimit": 2}, "httpPutResponseHopLimit is 2"),
])
def test_launch_template_without_imdsv2_is_reported(options, expected) -> None:
    found = violations(IMDSV2_REQUIRED, LT, {"metadataOptions": options}, name="cluster-system")
    assert len(found) == 1 and expected in found[0] and "cluster-system" in found[0]


def test_hop_limit_is_configurable() -> None:
    props = {"metadataOptions": {"httpTokens": "required", "httpPutResponseHopLimit": 2}}
    assert violations(IMDSV2_REQUIRED, LT, props, config={"maxHopLimit": 2}) == []


def test_disabled_metadata_endpoint_complies() -> None:
    assert violations(IMDSV2_REQUIRED, "aws:ec2/instance:Instance", {"metadataOptions": {"httpEndpoint": "disabled"}}) == []


def node_class(spec: dict) -> dict:
    return k8s("karpenter.k8s.aws/v1", "EC2NodeClass", "gpu", {"role": "node", **spec}, namespace=None)


def test_ec2_nodeclass_defaults_and_explicit_imdsv2_comply() -> None:
    for obj in (node_class({}), node_class({"metadataOptions": {"httpTokens": "required", "httpPutResponseHopLimit": 1}})):
        assert violations(IMDSV2_REQUIRED, k8s_type(obj), obj) == []


def test_ec2_nodeclass_allowing_imdsv1_is_reported() -> None:
    obj = node_class({"metadataOptions": {"httpTokens": "optional", "httpPutResponseHopLimit": 2}})
    found = violations(IMDSV2_REQUIRED, k8s_type(obj), obj)
    assert len(found) == 1 and "EC2NodeClass gpu" in found[0] and "spec.metadataOptions" in found[0]
