"""`LogStore` (CloudWatch log groups per namespace) and `LogSearchDomain` (an OpenSearch domain, the managed ELK).

Both are written to by Fluent Bit only (infra/k8s/logging.py), through the `grant_write` of each, handed to its
`WorkloadIdentity`. The key policy follows "Encrypt log data in CloudWatch Logs using AWS KMS" (CloudWatch Logs
User Guide, encrypt-log-data-kms): CloudWatch Logs uses the key as the service principal `logs.<region>.amazonaws.com`,
limited by the `kms:EncryptionContext:aws:logs:arn` condition to our log groups. `logs_kms_key` declares that key
once for every log group of the platform: these, the EKS control plane's (infra/aws/cluster.py) and the VPC flow
logs' (infra/aws/network.py).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Final

import pulumi
import pulumi_aws as aws

from infra import versions
from infra.aws.iam import Grant
from infra.config.logging import LoggingConfig, OpenSearchConfig

WRITE_ACTIONS: Final = ("logs:CreateLogStream", "logs:PutLogEvents")
"""What Fluent Bit's cloudwatch_logs output needs on groups that exist (auto_create_group stays off)."""
KMS_LOGS_ACTIONS: Final = ("kms:Encrypt", "kms:Decrypt", "kms:ReEncryptFrom", "kms:ReEncryptTo", "kms:GenerateDataKey",
                            "kms:GenerateDataKeyWithoutPlaintext", "kms:DescribeKey")
"""The key actions the CloudWatch Logs service principal needs: the guide's `kms:Encrypt*`, `kms:Decrypt*`,
`kms:ReEncrypt*`, `kms:GenerateDataKey*` and `kms:Describe*` (encrypt-log-data-kms, "Step 2") spelled out."""
KMS_ACCOUNT_ACTIONS: Final = (
    "kms:CancelKeyDeletion", "kms:CreateAlias", "kms:CreateGrant", "kms:Decrypt", "kms:DeleteAlias", "kms:DescribeKey",
    "kms:DisableKey", "kms:DisableKeyRotation", "kms:EnableKey", "kms:EnableKeyRotation", "kms:Encrypt",
    "kms:GenerateDataKey", "kms:GenerateDataKeyWithoutPlaintext", "kms:GetKeyPolicy", "kms:GetKeyRotationStatus",
    "kms:ListAliases", "kms:ListGrants", "kms:ListKeyPolicies", "kms:ListResourceTags", "kms:PutKeyPolicy",
    "kms:ReEncryptFrom", "kms:ReEncryptTo", "kms:RetireGrant", "kms:RevokeGrant", "kms:RotateKeyOnDemand",
    "kms:ScheduleKeyDeletion", "kms:TagResource", "kms:UntagResource", "kms:UpdateAlias", "kms:UpdateKeyDescription")
"""What the account's IAM principals may do with the key: administer it (the KMS guide's key-administrator actions,
spelled out rather than `kms:*`) and use it, e.g. OpenSearch's grant for encryption at rest (kms:CreateGrant)."""
OPENSEARCH_WRITE_ACTIONS: Final = ("es:ESHttpPost", "es:ESHttpPut")
"""HTTP methods Fluent Bit's opensearch output signs (POST /_bulk, index creation), which the index lifecycle Job
also uses (PUT the ISM policy, POST its add and change_policy)."""
ISM_POLICIES_PATH: Final = "_plugins/_ism/policies/*"
"""The only paths the role may GET: the index lifecycle Job reads the ISM policy's sequence numbers there."""
HTTPS_PORT: Final = 443
"""The domain's only port (enforce_https)."""
TLS_POLICY: Final = "Policy-Min-TLS-1-2-PFS-2023-10"
"""TLS 1.2+ with forward-secret ciphers only (OpenSearch API DomainEndpointOptions.TLSSecurityPolicy)."""


class LogStore(pulumi.ComponentResource):
    """One CloudWatch log group per namespace, with retention and a KMS key of its own."""

    group_names: dict[str, pulumi.Output[str]]
    """Log group name by namespace."""
    kms_key_arn: pulumi.Output[str]
    """The key encrypting the groups (and the OpenSearch domain)."""

    def __init__(self, name: str, config: LoggingConfig, *, prefix: str, namespaces: Sequence[str], region: str,
                 protect: bool, opts: pulumi.ResourceOptions | None = None) -> None:
        """Groups are named `<prefix>/<namespace>`; `protect` sets Pulumi `protect` on them and the key."""
        super().__init__("modelplane:logging:LogStore", name, None, opts)
        child = pulumi.ResourceOptions(parent=self, protect=protect)
        key = logs_kms_key(f"{name}-kms", description=f"modelplane logs under {prefix}",
                           log_group_pattern=f"{prefix}/*", region=region,
                           deletion_window_days=config.kms_deletion_window_days, opts=child)
        # `alias/modelplane-*`: the only aliases the deployer role may create (docs/deployer-policy.json, KeyAliases).
        aws.kms.Alias(f"{name}-kms", name=f"alias/modelplane-{pulumi.get_stack()}-logs",
                      target_key_id=key.key_id, opts=pulumi.ResourceOptions(parent=self))
        self.kms_key_arn = key.arn
        self._arns: list[pulumi.Output[str]] = []
        self.group_names = {}
        for namespace in namespaces:
            group = aws.cloudwatch.LogGroup(f"{name}-{namespace}", name=f"{prefix}/{namespace}",
                                            retention_in_days=config.retention_days,
                                            kms_key_id=key.arn, opts=child)
            self.group_names[namespace] = group.name
            self._arns.append(group.arn)
        self.register_outputs({"group_names": self.group_names})

    def grant_write(self) -> Grant:
        """Create streams in and put events to these groups only."""
        return Grant(statements=(pulumi.Output.all(*self._arns).apply(lambda arns: {
            "Effect": "Allow", "Action": list(WRITE_ACTIONS),
            "Resource": sorted({*arns, *(f"{arn}:*" for arn in arns)})}),))


def logs_kms_key(name: str, *, description: str, log_group_pattern: str, region: pulumi.Input[str],
                 deletion_window_days: int | None, opts: pulumi.ResourceOptions) -> aws.kms.Key:
    """A rotating customer key that CloudWatch Logs in `region` may use only for log groups whose name matches
    `log_group_pattern` (ArnLike, e.g. `/modelplane/prod/*`); every log group of the platform is encrypted with one.
    `deletion_window_days` None keeps KMS's default (30, the longest)."""
    account = aws.get_caller_identity_output(opts=pulumi.InvokeOutputOptions(parent=opts.parent)).account_id
    policy = pulumi.Output.all(account, region).apply(lambda values: _key_policy(values[0], values[1],
                                                                                 log_group_pattern))
    return aws.kms.Key(name, description=description, enable_key_rotation=True,
                       deletion_window_in_days=deletion_window_days, policy=policy, opts=opts)


def _key_policy(account: str, region: str, log_group_pattern: str) -> str:
    root = {"Sid": "AccountAdministers", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{account}:root"},
            "Action": list(KMS_ACCOUNT_ACTIONS), "Resource": "*"}
    logs = {"Sid": "CloudWatchLogsEncrypts", "Effect": "Allow",
            "Principal": {"Service": f"logs.{region}.amazonaws.com"}, "Action": list(KMS_LOGS_ACTIONS), "Resource": "*",
            "Condition": {"ArnLike": {
                "kms:EncryptionContext:aws:logs:arn": f"arn:aws:logs:{region}:{account}:log-group:{log_group_pattern}"}}}
    return json.dumps({"Version": "2012-10-17", "Statement": [root, logs]}, sort_keys=True)


def domain_arn(domain_name: str, region: str) -> pulumi.Output[str]:
    """The ARN a domain named `domain_name` will have (known before it exists, so grants need not wait on it)."""
    account = aws.get_caller_identity_output().account_id
    return pulumi.Output.concat("arn:aws:es:", region, ":", account, ":domain/", domain_name)


def grant_search_write(arn: pulumi.Input[str]) -> Grant:
    """Sign bulk writes to the domain at `arn`, and reads of its ISM policies (for the index lifecycle Job)."""
    domain = pulumi.Output.from_input(arn)
    return Grant(statements=(
        domain.apply(lambda value: {"Effect": "Allow", "Action": list(OPENSEARCH_WRITE_ACTIONS),
                                    "Resource": f"{value}/*"}),
        domain.apply(lambda value: {"Effect": "Allow", "Action": ["es:ESHttpGet"],
                                    "Resource": f"{value}/{ISM_POLICIES_PATH}"}),
    ))


class LogSearchDomain(pulumi.ComponentResource):
    """A VPC-only OpenSearch domain: KMS at rest, node-to-node TLS, HTTPS only, fine-grained access control."""

    endpoint: pulumi.Output[str]
    """The domain's VPC endpoint host (HTTPS on 443)."""

    def __init__(self, name: str, config: OpenSearchConfig, *, domain_name: str, region: str,
                 vpc_id: pulumi.Input[str], subnet_ids: Sequence[pulumi.Input[str]],
                 allowed_security_group_ids: Sequence[pulumi.Input[str]], kms_key_arn: pulumi.Input[str],
                 master_user_arn: pulumi.Input[str], protect: bool,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        """The domain lives in `subnet_ids` (one per zone it spans) and admits 443 from `allowed_security_group_ids`;
        `master_user_arn` is the fine-grained access control master (the IAM role Fluent Bit signs with)."""
        super().__init__("modelplane:logging:LogSearchDomain", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        sg = aws.ec2.SecurityGroup(f"{name}-sg", vpc_id=vpc_id, description="OpenSearch, only from the cluster",
                                   tags={"Name": f"{name}-opensearch"}, opts=child)
        for i, source in enumerate(allowed_security_group_ids):
            aws.vpc.SecurityGroupIngressRule(
                f"{name}-from-{i}", security_group_id=sg.id, referenced_security_group_id=source, ip_protocol="tcp",
                from_port=HTTPS_PORT, to_port=HTTPS_PORT, description="OpenSearch from the EKS cluster", opts=child)
        zones = config.availability_zones if config.zone_awareness else 1
        account = aws.get_caller_identity_output(opts=pulumi.InvokeOutputOptions(parent=self)).account_id
        # IAM decides who may call; the resource policy only admits this account's principals.
        access = account.apply(lambda acct: json.dumps({"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{acct}:root"}, "Action": "es:ESHttp*",
            "Resource": f"arn:aws:es:{region}:{acct}:domain/{domain_name}/*"}]}, sort_keys=True))
        domain = aws.opensearch.Domain(
            f"{name}-domain", domain_name=domain_name, engine_version=versions.OPENSEARCH_ENGINE_VERSION,
            cluster_config=aws.opensearch.DomainClusterConfigArgs(
                instance_type=config.instance_type, instance_count=config.instance_count,
                dedicated_master_enabled=config.dedicated_masters,
                dedicated_master_type=config.master_instance_type if config.dedicated_masters else None,
                dedicated_master_count=3 if config.dedicated_masters else None,
                zone_awareness_enabled=config.zone_awareness,
                zone_awareness_config=aws.opensearch.DomainClusterConfigZoneAwarenessConfigArgs(
                    availability_zone_count=zones) if config.zone_awareness else None,
            ),
            vpc_options=aws.opensearch.DomainVpcOptionsArgs(subnet_ids=list(subnet_ids)[:zones],
                                                            security_group_ids=[sg.id]),
            ebs_options=aws.opensearch.DomainEbsOptionsArgs(ebs_enabled=True, volume_type="gp3",
                                                            volume_size=config.volume_size_gb),
            encrypt_at_rest=aws.opensearch.DomainEncryptAtRestArgs(enabled=True, kms_key_id=kms_key_arn),
            node_to_node_encryption=aws.opensearch.DomainNodeToNodeEncryptionArgs(enabled=True),
            domain_endpoint_options=aws.opensearch.DomainDomainEndpointOptionsArgs(
                enforce_https=True, tls_security_policy=TLS_POLICY),
            advanced_security_options=aws.opensearch.DomainAdvancedSecurityOptionsArgs(
                enabled=True, internal_user_database_enabled=False,
                master_user_options=aws.opensearch.DomainAdvancedSecurityOptionsMasterUserOptionsArgs(
                    master_user_arn=master_user_arn)),
            access_policies=access,
            opts=pulumi.ResourceOptions(parent=self, protect=protect),
        )
        self.endpoint = domain.endpoint
        self.register_outputs({"endpoint": self.endpoint})
