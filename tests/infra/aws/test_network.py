"""Network: subnets per AZ, NAT layout, discovery tags, endpoints, flow logs."""

import json
from typing import Any

from infra.aws.network import Network
from infra.config.network import NetworkConfig
from infra.review.engine import render_program
from infra.review.graph import Graph
from tests.support.graph import assert_all_have_props, assert_count, assert_has_props, render_variant

MINIMAL = {"cidr": "10.0.0.0/16", "availabilityZones": ["eu-west-1a", "eu-west-1b"],
           "publicSubnets": ["10.0.0.0/24", "10.0.1.0/24"], "privateSubnets": ["10.0.32.0/19", "10.0.64.0/19"]}
"""The fewest `modelplane:network` keys a stack may set."""


def _render(section: dict[str, Any]) -> Graph:
    config = NetworkConfig.model_validate(section)
    return render_program("test", lambda: Network("net", config, region="eu-west-1", cluster_name="c") and None)


def test_network_defaults() -> None:
    graph = _render(MINIMAL)
    assert_has_props(graph, "aws:ec2/vpc:Vpc", {"cidrBlock": "10.0.0.0/16", "enableDnsHostnames": True})
    assert_count(graph, "aws:ec2/natGateway:NatGateway", 2)
    assert_count(graph, "aws:ec2/subnet:Subnet", 4)
    assert_count(graph, "aws:ec2/routeTable:RouteTable", 3)
    assert [r.inputs["vpcEndpointType"] for r in graph.of_type("aws:ec2/vpcEndpoint:VpcEndpoint")] == ["Gateway"]
    assert_has_props(graph, "aws:ec2/vpcEndpoint:VpcEndpoint", {"serviceName": "com.amazonaws.eu-west-1.s3"})
    assert_has_props(graph, "aws:ec2/flowLog:FlowLog", {"trafficType": "ALL", "maxAggregationInterval": 60})
    assert_has_props(graph, "aws:cloudwatch/logGroup:LogGroup", {"retentionInDays": 30})


def test_subnets_are_tagged_with_the_cluster_name() -> None:
    graph = _render(MINIMAL)
    assert_has_props(graph, "aws:ec2/subnet:Subnet", {"cidrBlock": "10.0.32.0/19", "tags": {
        "karpenter.sh/discovery": "c", "kubernetes.io/cluster/c": "shared"}})


def test_intra_subnets_get_their_own_route_table_and_s3_route() -> None:
    graph = _render({**MINIMAL, "intraSubnets": ["10.0.2.0/24", "10.0.3.0/24"]})
    assert_has_props(graph, "aws:ec2/subnet:Subnet", {"cidrBlock": "10.0.3.0/24", "availabilityZone": "eu-west-1b",
                                                      "tags": {"modelplane.io/subnet-role": "intra"}})
    assert len(graph.one("aws:ec2/vpcEndpoint:VpcEndpoint", "net-s3").inputs["routeTableIds"]) == 3


def test_interface_endpoints_admit_https_from_the_vpc_cidr() -> None:
    graph = _render({**MINIMAL, "interfaceEndpoints": ["sts"]})
    assert_has_props(graph, "aws:ec2/vpcEndpoint:VpcEndpoint",
                     {"serviceName": "com.amazonaws.eu-west-1.sts", "vpcEndpointType": "Interface"})
    assert_has_props(graph, "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule",
                     {"cidrIpv4": "10.0.0.0/16", "fromPort": 443})


def test_flow_log_settings_come_from_the_section() -> None:
    graph = _render({**MINIMAL, "flowLogs": {"retentionDays": 7, "trafficType": "REJECT"}})
    assert_has_props(graph, "aws:ec2/flowLog:FlowLog", {"trafficType": "REJECT"})
    assert_has_props(graph, "aws:cloudwatch/logGroup:LogGroup", {"retentionInDays": 7})


def test_prod_has_one_nat_gateway_per_az(prod: Graph) -> None:
    assert_count(prod, "aws:ec2/natGateway:NatGateway", 3)
    assert_count(prod, "aws:ec2/eip:Eip", 3)


def test_dev_shares_a_single_nat_gateway(dev: Graph) -> None:
    assert_count(dev, "aws:ec2/natGateway:NatGateway", 1)
    private_routes = [r for r in dev.of_type("aws:ec2/route:Route") if "natGatewayId" in r.inputs]
    assert len(private_routes) == 2
    assert len({r.inputs["natGatewayId"] for r in private_routes}) == 1


def test_private_subnets_carry_internal_elb_and_karpenter_discovery_tags(prod: Graph) -> None:
    private = [s for s in prod.of_type("aws:ec2/subnet:Subnet")
               if s.inputs["tags"]["modelplane.io/subnet-role"] == "private"]
    assert len(private) == 3
    for subnet in private:
        assert subnet.inputs["tags"]["kubernetes.io/role/internal-elb"] == "1"
        assert subnet.inputs["tags"]["karpenter.sh/discovery"] == "modelplane-prod"


def test_public_subnets_are_tagged_for_elb_and_never_auto_assign_public_ips(prod: Graph) -> None:
    public = [s for s in prod.of_type("aws:ec2/subnet:Subnet") if s.inputs["tags"]["modelplane.io/subnet-role"] == "public"]
    assert len(public) == 3
    assert all(s.inputs["tags"]["kubernetes.io/role/elb"] == "1" for s in public)
    assert_all_have_props(prod, "aws:ec2/subnet:Subnet", {"mapPublicIpOnLaunch": False})


def test_subnets_spread_over_the_configured_zones(prod: Graph) -> None:
    zones = {s.inputs["availabilityZone"] for s in prod.of_type("aws:ec2/subnet:Subnet")}
    assert zones == {"us-east-1a", "us-east-1b", "us-east-1c"}


def test_s3_gateway_endpoint_and_configured_interface_endpoints(prod: Graph) -> None:
    assert_has_props(prod, "aws:ec2/vpcEndpoint:VpcEndpoint",
                     {"serviceName": "com.amazonaws.us-east-1.s3", "vpcEndpointType": "Gateway"})
    interface = {r.inputs["serviceName"] for r in prod.of_type("aws:ec2/vpcEndpoint:VpcEndpoint")
                 if r.inputs["vpcEndpointType"] == "Interface"}
    assert interface == {f"com.amazonaws.us-east-1.{s}" for s in ("ecr.api", "ecr.dkr", "sts", "logs")}


def test_interface_endpoints_are_private_dns_and_https_only_from_the_vpc(prod: Graph) -> None:
    endpoints = [r for r in prod.of_type("aws:ec2/vpcEndpoint:VpcEndpoint") if r.inputs["vpcEndpointType"] == "Interface"]
    assert all(r.inputs["privateDnsEnabled"] is True for r in endpoints)
    assert_has_props(prod, "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule",
                     {"cidrIpv4": "10.40.0.0/16", "fromPort": 443, "toPort": 443, "ipProtocol": "tcp"})


def test_flow_logs_go_to_cloudwatch_with_configured_retention(prod: Graph) -> None:
    assert_has_props(prod, "aws:ec2/flowLog:FlowLog", {"trafficType": "ALL", "logDestinationType": "cloud-watch-logs"})
    assert_has_props(prod, "aws:cloudwatch/logGroup:LogGroup", {"retentionInDays": 365})


def test_flow_logs_can_be_switched_off() -> None:
    graph = render_variant("dev", {"modelplane:network": {"flowLogs": {"enabled": False}}})
    assert_count(graph, "aws:ec2/flowLog:FlowLog", 0)


def test_default_security_group_is_locked_down(prod: Graph) -> None:
    assert_has_props(prod, "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup", {"ingress": [], "egress": []})


def test_intra_subnets_have_no_internet_route(prod: Graph) -> None:
    intra_tables = [r for r in prod.of_type("aws:ec2/routeTable:RouteTable") if r.name == "network-intra"]
    assert len(intra_tables) == 1
    assert not [r for r in prod.of_type("aws:ec2/route:Route") if "intra" in r.name]


def test_flow_log_group_keeps_its_auto_name_and_a_key_only_cloudwatch_logs_may_use_for_it() -> None:
    graph = _render(MINIMAL)
    group = graph.one("aws:cloudwatch/logGroup:LogGroup", "net-flow-logs").inputs
    # No fixed name: naming the group would replace the one a stack already has, and lose its history.
    assert "name" not in group and group["kmsKeyId"].startswith("arn:aws:kms:")
    assert ":log-group:net-flow-logs-" in graph.one("aws:ec2/flowLog:FlowLog").inputs["logDestination"]
    key = graph.one("aws:kms/key:Key", "net-flow-logs").inputs
    assert key["enableKeyRotation"] is True
    logs = next(s for s in json.loads(key["policy"])["Statement"] if s["Sid"] == "CloudWatchLogsEncrypts")
    assert logs["Principal"] == {"Service": "logs.eu-west-1.amazonaws.com"}
    # Pulumi's auto-name is the logical name, '-', and 7 random hex characters.
    assert logs["Condition"] == {"ArnLike": {
        "kms:EncryptionContext:aws:logs:arn": "arn:aws:logs:eu-west-1:123456789012:log-group:net-flow-logs-*"}}


def test_no_flow_logs_no_flow_log_key() -> None:
    graph = _render({**MINIMAL, "flowLogs": {"enabled": False}})
    assert_count(graph, "aws:kms/key:Key", 0)
