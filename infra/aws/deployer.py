"""`Deployer`: a CodeBuild project inside the VPC that runs `pulumi up` where a private EKS endpoint is reachable.

GitHub-hosted runners cannot reach a private API endpoint. The deploy workflow therefore runs the AWS half of a stack
on the hosted runner (`pulumi up --exclude <the Kubernetes provider> --exclude-dependents`, which also creates or
updates this project), uploads the commit as a zip to this component's bucket and starts this project
(`aws codebuild start-build`). Its builds run in the private subnets with a security group that the cluster security
group admits on 443, as the stack's deployer role (`cluster.deployerRoleArn`, which has its own access entry), and run
the whole `pulumi up` there. No runner to patch, no long-lived credentials: CodeBuild is billed per build minute.

Sources (argument names and values):
- CodeBuild project (vpcConfig, environment, source type S3 with an inline buildspec, logsConfig,
  concurrentBuildLimit): https://www.pulumi.com/registry/packages/aws/api-docs/codebuild/project/ (pulumi-aws 7.x).
- Builds in a VPC need private subnets with a NAT route and the ec2 network-interface permissions of the service role:
  https://docs.aws.amazon.com/codebuild/latest/userguide/vpc-support.html
- Image `aws/codebuild/amazonlinux-x86_64-standard:5.0` and its `python: 3.11` runtime:
  https://docs.aws.amazon.com/codebuild/latest/userguide/available-runtimes.html
- Buildspec 0.2 (`runtime-versions`, phases; variables persist across commands and phases):
  https://docs.aws.amazon.com/codebuild/latest/userguide/build-spec-ref.html
- Pulumi CLI install script and `--version`: https://www.pulumi.com/docs/iac/download-install/
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib.metadata import version

import pulumi
import pulumi_aws as aws
import yaml

from infra.aws.logging import logs_kms_key
from infra.aws.storage import private_bucket

BUILD_IMAGE = "aws/codebuild/amazonlinux-x86_64-standard:5.0"
"""CodeBuild's curated Amazon Linux 2023 image; it carries the Python 3.11 runtime the program needs."""
COMPUTE_TYPE = "BUILD_GENERAL1_MEDIUM"
"""4 vCPU / 7 GB: enough for `make setup` and a full `pulumi up`; billed per build minute."""
BUILD_TIMEOUT_MINUTES = 120
"""A build longer than this is stopped (a first `up` of prod, with MSK and OpenSearch, takes about an hour)."""
SOURCE_KEY = "source.zip"
"""The project's default source object; the workflow overrides it per commit (`<sha>.zip`)."""
SOURCE_RETENTION_DAYS = 7
"""Uploaded sources expire after a week: each is only read by the build started right after the upload."""
PULUMI_CLI_VERSION = version("pulumi")
"""The Pulumi CLI installed in the build: the same release as the pinned Python SDK (pyproject.toml)."""


def buildspec() -> str:
    """The build: install the pinned Pulumi CLI and the project, then `pulumi up` the stack with the policy pack."""
    return yaml.safe_dump({
        "version": 0.2,
        "phases": {
            "install": {
                "runtime-versions": {"python": "3.11"},
                "commands": [
                    'curl -fsSL https://get.pulumi.com | sh -s -- --version "$PULUMI_VERSION"',
                    "make setup",
                ],
            },
            "build": {
                "commands": [
                    'export PATH="$HOME/.pulumi/bin:$PATH"',
                    'pulumi login "$PULUMI_BACKEND_URL"',
                    # --refresh: what was deleted or changed on the cluster (a finished TrainJob removed to rerun
                    # it, a JobSet reaped by its TTL) is recreated instead of assumed to exist.
                    'pulumi up --yes --non-interactive --refresh --stack "$STACK" --policy-pack policies',
                ],
            },
        },
    }, sort_keys=False)


class Deployer(pulumi.ComponentResource):
    """A CodeBuild project in the private subnets, allowed to the cluster endpoint, with its source bucket and logs."""

    project_name: pulumi.Output[str]
    """The CodeBuild project the workflow starts."""
    source_bucket: pulumi.Output[str]
    """The bucket the workflow uploads the commit's zip to."""
    security_group_id: pulumi.Output[str]
    """The builds' security group (admitted by the cluster security group on 443)."""

    def __init__(self, name: str, *, cluster_name: str, role_arn: str, vpc_id: pulumi.Input[str],
                 subnet_ids: Sequence[pulumi.Input[str]], cluster_security_group_id: pulumi.Input[str],
                 log_retention_days: int, opts: pulumi.ResourceOptions | None = None) -> None:
        """Builds run as `role_arn` in `subnet_ids` (private, with a NAT route); `cluster_security_group_id` admits
        them on 443."""
        super().__init__("modelplane:deployer:Deployer", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        project_name = f"{cluster_name}-deployer"
        sg = aws.ec2.SecurityGroup(f"{name}-sg", vpc_id=vpc_id, description="In-VPC deploys: HTTPS out only",
                                   tags={"Name": project_name}, opts=child)
        # HTTPS out only: the cluster API, AWS APIs, the state backend, PyPI and the Pulumi download (through NAT).
        aws.vpc.SecurityGroupEgressRule(f"{name}-https-out", security_group_id=sg.id, cidr_ipv4="0.0.0.0/0",
                                        ip_protocol="tcp", from_port=443, to_port=443,
                                        description="HTTPS to the cluster API, AWS APIs and package indexes", opts=child)
        aws.vpc.SecurityGroupIngressRule(f"{name}-to-cluster", security_group_id=cluster_security_group_id,
                                         referenced_security_group_id=sg.id, ip_protocol="tcp", from_port=443,
                                         to_port=443, description="Kubernetes API from the in-VPC deployer",
                                         opts=child)
        log_group_name = f"/aws/codebuild/{project_name}"
        region = aws.get_region_output(opts=pulumi.InvokeOutputOptions(parent=self)).region
        # One key for the build logs and the uploaded sources: CloudWatch Logs may use it for this group only.
        key = logs_kms_key(f"{name}-key", description=f"CodeBuild logs and sources of {project_name}",
                           log_group_pattern=log_group_name, region=region, deletion_window_days=None, opts=child)
        bucket = self._source_bucket(name, key)
        log_group = aws.cloudwatch.LogGroup(f"{name}-logs", name=log_group_name, retention_in_days=log_retention_days,
                                            kms_key_id=key.arn, opts=child)
        project = aws.codebuild.Project(
            f"{name}-project",
            name=project_name,
            description=f"pulumi up of stack {pulumi.get_stack()} from inside the VPC of {cluster_name}",
            service_role=role_arn,
            build_timeout=BUILD_TIMEOUT_MINUTES,
            # One deploy at a time, as the workflow's concurrency group: two `up`s would contend for the stack lock.
            concurrent_build_limit=1,
            artifacts=aws.codebuild.ProjectArtifactsArgs(type="NO_ARTIFACTS"),
            source=aws.codebuild.ProjectSourceArgs(type="S3", location=bucket.bucket.apply(
                lambda b: f"{b}/{SOURCE_KEY}"), buildspec=buildspec()),
            environment=aws.codebuild.ProjectEnvironmentArgs(
                type="LINUX_CONTAINER", compute_type=COMPUTE_TYPE, image=BUILD_IMAGE,
                image_pull_credentials_type="CODEBUILD",
                environment_variables=[
                    aws.codebuild.ProjectEnvironmentEnvironmentVariableArgs(name="STACK", value=pulumi.get_stack()),
                    aws.codebuild.ProjectEnvironmentEnvironmentVariableArgs(name="PULUMI_VERSION",
                                                                            value=PULUMI_CLI_VERSION),
                ],
            ),
            vpc_config=aws.codebuild.ProjectVpcConfigArgs(vpc_id=vpc_id, subnets=list(subnet_ids),
                                                          security_group_ids=[sg.id]),
            logs_config=aws.codebuild.ProjectLogsConfigArgs(
                cloudwatch_logs=aws.codebuild.ProjectLogsConfigCloudwatchLogsArgs(group_name=log_group.name,
                                                                                  status="ENABLED"),
            ),
            opts=child,
        )
        self.project_name = project.name
        self.source_bucket = bucket.bucket
        self.security_group_id = sg.id
        self.register_outputs({"project_name": self.project_name, "source_bucket": self.source_bucket})

    def _source_bucket(self, name: str, key: aws.kms.Key) -> aws.s3.Bucket:
        every_object = aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix="")
        rules = [
            aws.s3.BucketLifecycleConfigurationRuleArgs(
                id="abort-incomplete-multipart", status="Enabled", filter=every_object,
                abort_incomplete_multipart_upload=aws.s3.BucketLifecycleConfigurationRuleAbortIncompleteMultipartUploadArgs(
                    days_after_initiation=1),
            ),
            aws.s3.BucketLifecycleConfigurationRuleArgs(
                id="expire-sources", status="Enabled", filter=every_object,
                expiration=aws.s3.BucketLifecycleConfigurationRuleExpirationArgs(days=SOURCE_RETENTION_DAYS),
                noncurrent_version_expiration=aws.s3.BucketLifecycleConfigurationRuleNoncurrentVersionExpirationArgs(
                    noncurrent_days=1),
            ),
        ]
        # force_destroy: the bucket only holds short-lived copies of the repository, never data.
        return private_bucket(f"{name}-source", key=key, rules=rules, parent=self, force_destroy=True)

