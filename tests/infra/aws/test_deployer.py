"""The in-VPC deployer: a CodeBuild project in the private subnets, admitted by the cluster on 443, as the deployer."""

import re
from collections.abc import Callable
from importlib.metadata import version

import pytest
import yaml

from infra.review.graph import Graph

PROJECT = "aws:codebuild/project:Project"
DEPLOYER_ROLE = "arn:aws:iam::123456789012:role/modelplane-deployer"


@pytest.fixture(scope="module")
def staging(stack_graph: Callable[[str], Graph]) -> Graph:
    """The staging stack's graph (private endpoint, three AZs)."""
    return stack_graph("staging")


def test_project_runs_in_the_private_subnets_as_the_deployer_role(staging: Graph) -> None:
    project = staging.one(PROJECT)
    assert project.inputs["name"] == "modelplane-staging-deployer"
    assert project.inputs["serviceRole"] == DEPLOYER_ROLE
    vpc = project.inputs["vpcConfig"]
    # The nodes' subnets are the private ones (with a NAT route), the ones the cache also lives in.
    assert vpc["subnets"] == staging.one("aws:eks/nodeGroup:NodeGroup").inputs["subnetIds"] and len(vpc["subnets"]) == 3
    assert vpc["vpcId"] == staging.one("aws:ec2/securityGroup:SecurityGroup", "cache-sg").inputs["vpcId"]
    assert staging.one("aws:ec2/securityGroup:SecurityGroup", "deployer-sg").inputs["vpcId"] == vpc["vpcId"]


def test_cluster_security_group_admits_the_deployer_on_443_only(staging: Graph) -> None:
    [sg] = staging.one(PROJECT).inputs["vpcConfig"]["securityGroupIds"]
    # The cache admits the cluster security group: the same ID must be the one opened to the deployer.
    cluster_sg = staging.one("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule",
                             "cache-from-0").inputs["referencedSecurityGroupId"]
    rule = staging.one("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule", "deployer-to-cluster")
    assert rule.inputs["securityGroupId"] == cluster_sg and rule.inputs["referencedSecurityGroupId"] == sg
    assert (rule.inputs["ipProtocol"], rule.inputs["fromPort"], rule.inputs["toPort"]) == ("tcp", 443, 443)
    egress = staging.one("aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule", "deployer-https-out")
    assert egress.inputs["securityGroupId"] == sg and (egress.inputs["fromPort"], egress.inputs["toPort"]) == (443, 443)


def test_build_installs_the_pinned_cli_and_runs_up_of_its_own_stack_with_the_policy_pack(staging: Graph) -> None:
    project = staging.one(PROJECT)
    env = {v["name"]: v["value"] for v in project.inputs["environment"]["environmentVariables"]}
    assert env["STACK"] == "staging"
    assert env["PULUMI_VERSION"] == version("pulumi")
    spec = yaml.safe_load(project.inputs["source"]["buildspec"])
    assert spec["phases"]["install"]["runtime-versions"] == {"python": "3.11"}
    assert any("--version \"$PULUMI_VERSION\"" in c for c in spec["phases"]["install"]["commands"])
    command = 'pulumi up --yes --non-interactive --refresh --stack "$STACK" --policy-pack policies'
    assert command in spec["phases"]["build"]["commands"]
    assert project.inputs["concurrentBuildLimit"] == 1


def test_source_comes_from_the_stack_bucket_and_logs_go_to_an_encrypted_group(staging: Graph) -> None:
    project = staging.one(PROJECT)
    assert project.inputs["source"]["type"] == "S3"
    assert re.fullmatch(r"deployer-source-[0-9a-f]+/source\.zip", project.inputs["source"]["location"])
    staging.one("aws:s3/bucketPolicy:BucketPolicy", "deployer-source")  # TLS-only, as every bucket (policy pack)
    group = staging.one("aws:cloudwatch/logGroup:LogGroup", "deployer-logs")
    assert group.inputs["name"] == "/aws/codebuild/modelplane-staging-deployer" and group.inputs["kmsKeyId"]
    assert project.inputs["logsConfig"]["cloudwatchLogs"] == {"groupName": group.inputs["name"], "status": "ENABLED"}
    sse = staging.one("aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
                      "deployer-source").inputs["rules"][0]["applyServerSideEncryptionByDefault"]
    assert sse == {"sseAlgorithm": "aws:kms", "kmsMasterKeyId": group.inputs["kmsKeyId"]}  # one key for both
    lifecycle = staging.one("aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration", "deployer-source")
    rules = {r["id"]: r for r in lifecycle.inputs["rules"]}
    assert rules["expire-sources"]["expiration"] == {"days": 7}
    assert rules["abort-incomplete-multipart"]["abortIncompleteMultipartUpload"] == {"daysAfterInitiation": 1}

