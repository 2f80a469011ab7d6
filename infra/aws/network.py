"""`Network`: the VPC, its subnets across AZs, NAT, endpoints and flow logs."""

from __future__ import annotations

import json
from collections.abc import Sequence
from ipaddress import IPv4Network

import pulumi
import pulumi_aws as aws

from infra.aws.iam import service_trust_policy
from infra.aws.karpenter import DISCOVERY_TAG
from infra.aws.logging import logs_kms_key
from infra.config.network import FlowLogsConfig, NetworkConfig
from workloads.common.vocab import SUBNET_ROLE_TAG

ELB_ROLE_TAG = "kubernetes.io/role/elb"
"""Subnet tag the AWS load balancer controller looks for when placing internet-facing load balancers."""
INTERNAL_ELB_ROLE_TAG = "kubernetes.io/role/internal-elb"
"""Subnet tag the AWS load balancer controller looks for when placing internal load balancers."""


class Network(pulumi.ComponentResource):
    """A VPC with public, private and intra subnets per AZ, NAT, endpoints and flow logs."""

    vpc_id: pulumi.Output[str]
    """The VPC id."""
    vpc_cidr: str
    """The VPC CIDR block."""
    public_subnet_ids: list[pulumi.Output[str]]
    """Public subnet ids, one per AZ."""
    private_subnet_ids: list[pulumi.Output[str]]
    """Private subnet ids, one per AZ (nodes, caches)."""
    intra_subnet_ids: list[pulumi.Output[str]]
    """Intra subnet ids, one per AZ (empty when not configured)."""

    def __init__(self, name: str, config: NetworkConfig, *, region: str, cluster_name: str,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        """`region` names the endpoint services; `cluster_name` goes into the ELB and Karpenter discovery tags."""
        super().__init__("modelplane:network:Network", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.vpc_cidr = str(config.cidr)
        zones = config.availability_zones
        vpc = aws.ec2.Vpc(f"{name}-vpc", cidr_block=self.vpc_cidr, enable_dns_hostnames=True, enable_dns_support=True,
                          tags={"Name": f"{name}-vpc"}, opts=child)
        self.vpc_id = vpc.id
        # Lock down the default security group: nothing should ever use it (CIS AWS 5.4).
        aws.ec2.DefaultSecurityGroup(f"{name}-default-sg", vpc_id=vpc.id, ingress=[], egress=[],
                                     tags={"Name": f"{name}-default-deny"}, opts=child)
        igw = aws.ec2.InternetGateway(f"{name}-igw", vpc_id=vpc.id, tags={"Name": f"{name}-igw"}, opts=child)

        public_rt = aws.ec2.RouteTable(f"{name}-public", vpc_id=vpc.id, tags={"Name": f"{name}-public"}, opts=child)
        aws.ec2.Route(f"{name}-public-internet", route_table_id=public_rt.id, destination_cidr_block="0.0.0.0/0",
                      gateway_id=igw.id, opts=child)
        cluster_tag = {f"kubernetes.io/cluster/{cluster_name}": "shared"}
        self.public_subnet_ids = self._subnets(
            name, "public", vpc, config.public_subnets, zones, {ELB_ROLE_TAG: "1", **cluster_tag},
            [public_rt] * len(config.public_subnets),
        )

        nat_count = len(zones) if config.nat_gateways == "perAz" else 1
        nats = [self._nat(name, i, zones[i], self.public_subnet_ids[i], igw) for i in range(nat_count)]
        private_rts = []
        for i, zone in enumerate(zones):
            rt = aws.ec2.RouteTable(f"{name}-private-{zone}", vpc_id=vpc.id, tags={"Name": f"{name}-private-{zone}"},
                                    opts=child)
            aws.ec2.Route(f"{name}-private-{zone}-nat", route_table_id=rt.id, destination_cidr_block="0.0.0.0/0",
                          nat_gateway_id=nats[i % nat_count].id, opts=child)
            private_rts.append(rt)
        self.private_subnet_ids = self._subnets(
            name, "private", vpc, config.private_subnets, zones,
            {INTERNAL_ELB_ROLE_TAG: "1", DISCOVERY_TAG: cluster_name, **cluster_tag}, private_rts,
        )

        route_tables = list(private_rts)
        self.intra_subnet_ids = []
        if config.intra_subnets:
            intra_rt = aws.ec2.RouteTable(f"{name}-intra", vpc_id=vpc.id, tags={"Name": f"{name}-intra"}, opts=child)
            route_tables.append(intra_rt)
            self.intra_subnet_ids = self._subnets(name, "intra", vpc, config.intra_subnets, zones, {},
                                                  [intra_rt] * len(config.intra_subnets))

        # Gateway endpoint: S3 traffic (datasets, checkpoints) stays on the AWS network and skips NAT charges.
        aws.ec2.VpcEndpoint(f"{name}-s3", vpc_id=vpc.id, service_name=f"com.amazonaws.{region}.s3",
                            vpc_endpoint_type="Gateway", route_table_ids=[rt.id for rt in route_tables],
                            tags={"Name": f"{name}-s3"}, opts=child)
        if config.interface_endpoints:
            self._interface_endpoints(name, vpc, config.interface_endpoints, region)
        if config.flow_logs.enabled:
            self._flow_logs(name, vpc, config.flow_logs, region=region, cluster_name=cluster_name)
        self.register_outputs({
            "vpc_id": self.vpc_id,
            "public_subnet_ids": self.public_subnet_ids,
            "private_subnet_ids": self.private_subnet_ids,
            "intra_subnet_ids": self.intra_subnet_ids,
        })

    def _subnets(self, name: str, role: str, vpc: aws.ec2.Vpc, cidrs: Sequence[IPv4Network], zones: Sequence[str],
                 tags: dict[str, str], route_tables: Sequence[aws.ec2.RouteTable]) -> list[pulumi.Output[str]]:
        ids = []
        for cidr, zone, rt in zip(cidrs, zones, route_tables, strict=True):
            subnet = aws.ec2.Subnet(
                f"{name}-{role}-{zone}", vpc_id=vpc.id, cidr_block=str(cidr), availability_zone=zone,
                # No public IPs by default, even in public subnets: only NAT and load balancers live there.
                map_public_ip_on_launch=False,
                tags={"Name": f"{name}-{role}-{zone}", SUBNET_ROLE_TAG: role, **tags},
                opts=pulumi.ResourceOptions(parent=self),
            )
            aws.ec2.RouteTableAssociation(f"{name}-{role}-{zone}", subnet_id=subnet.id, route_table_id=rt.id,
                                          opts=pulumi.ResourceOptions(parent=self))
            ids.append(subnet.id)
        return ids

    def _nat(self, name: str, i: int, zone: str, subnet_id: pulumi.Output[str],
             igw: aws.ec2.InternetGateway) -> aws.ec2.NatGateway:
        eip = aws.ec2.Eip(f"{name}-nat-{zone}", domain="vpc", tags={"Name": f"{name}-nat-{zone}"},
                          opts=pulumi.ResourceOptions(parent=self, depends_on=[igw]))
        return aws.ec2.NatGateway(f"{name}-nat-{zone}", allocation_id=eip.id, subnet_id=subnet_id,
                                  tags={"Name": f"{name}-nat-{zone}"}, opts=pulumi.ResourceOptions(parent=self))

    def _interface_endpoints(self, name: str, vpc: aws.ec2.Vpc, services: Sequence[str], region: str) -> None:
        child = pulumi.ResourceOptions(parent=self)
        sg = aws.ec2.SecurityGroup(f"{name}-endpoints", vpc_id=vpc.id,
                                   description="HTTPS from inside the VPC to interface endpoints",
                                   tags={"Name": f"{name}-endpoints"}, opts=child)
        aws.vpc.SecurityGroupIngressRule(f"{name}-endpoints-https", security_group_id=sg.id, cidr_ipv4=self.vpc_cidr,
                                         ip_protocol="tcp", from_port=443, to_port=443,
                                         description="HTTPS from the VPC", opts=child)
        for service in services:
            aws.ec2.VpcEndpoint(
                f"{name}-{service.replace('.', '-')}", vpc_id=vpc.id,
                service_name=f"com.amazonaws.{region}.{service}", vpc_endpoint_type="Interface",
                private_dns_enabled=True, subnet_ids=self.private_subnet_ids, security_group_ids=[sg.id],
                tags={"Name": f"{name}-{service}"}, opts=child,
            )

    def _flow_logs(self, name: str, vpc: aws.ec2.Vpc, flow_logs: FlowLogsConfig, *, region: str,
                   cluster_name: str) -> None:
        child = pulumi.ResourceOptions(parent=self)
        # The group keeps Pulumi's auto-name (a fixed one would replace the existing group, losing its history), so
        # the key admits CloudWatch Logs for that name's form: the logical name, '-', 7 random hex characters.
        group_logical = f"{name}-flow-logs"
        key = logs_kms_key(f"{name}-flow-logs", description=f"VPC flow logs of {cluster_name}",
                           log_group_pattern=f"{group_logical}-*", region=region, deletion_window_days=None,
                           opts=child)
        aws.kms.Alias(f"{name}-flow-logs", name=f"alias/{cluster_name}-flow-logs", target_key_id=key.key_id,
                      opts=child)
        group = aws.cloudwatch.LogGroup(group_logical, retention_in_days=flow_logs.retention_days, kms_key_id=key.arn,
                                        opts=child)
        role = aws.iam.Role(f"{name}-flow-logs", assume_role_policy=service_trust_policy("vpc-flow-logs.amazonaws.com"),
                            opts=child)
        # Scoped to the one log group: the flow-log service needs no wider logs access.
        aws.iam.RolePolicy(f"{name}-flow-logs", role=role.id, policy=group.arn.apply(lambda arn: json.dumps({
            "Version": "2012-10-17",
            "Statement": [{
                "Effect": "Allow",
                "Action": ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
                "Resource": [arn, f"{arn}:*"],
            }],
        }, sort_keys=True)), opts=child)
        aws.ec2.FlowLog(f"{name}-flow-logs", vpc_id=vpc.id, traffic_type=flow_logs.traffic_type,
                        log_destination_type="cloud-watch-logs", log_destination=group.arn, iam_role_arn=role.arn,
                        max_aggregation_interval=60, opts=child)
