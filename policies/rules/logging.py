"""Logs: CloudWatch log groups expire and are encrypted; an OpenSearch domain is private and encrypted."""

from __future__ import annotations

from typing import Final

from pulumi_policy import EnforcementLevel, ReportViolation, ResourceValidationArgs, ResourceValidationPolicy

from policies.wire import as_list

LOG_GROUP: Final = "aws:cloudwatch/logGroup:LogGroup"
OPENSEARCH_DOMAIN: Final = "aws:opensearch/domain:Domain"


def _retention(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != LOG_GROUP:
        return
    # 0 or unset is CloudWatch's "never expire".
    if not args.props.get("retentionInDays"):
        report(f"CloudWatch log group '{args.name}' never expires, so logs (and their cost) grow forever. Fix: set "
               f"retention_in_days (modelplane:logging.retentionDays for the namespace groups).", args.urn)


def _kms(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != LOG_GROUP:
        return
    if not args.props.get("kmsKeyId"):
        report(f"CloudWatch log group '{args.name}' is encrypted only with CloudWatch's own key, so anyone with "
               f"logs:GetLogEvents reads it. Fix: set kms_key_id to a customer-managed key whose policy admits "
               f"logs.<region>.amazonaws.com (logs_kms_key in infra/aws/logging.py makes one).", args.urn)


def _private_encrypted(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != OPENSEARCH_DOMAIN:
        return
    props = args.props
    problems = []
    if not as_list((props.get("vpcOptions") or {}).get("subnetIds")):
        problems.append("it has a public endpoint (no vpc_options subnet_ids)")
    if (props.get("encryptAtRest") or {}).get("enabled") is not True:
        problems.append("encrypt_at_rest is off")
    if (props.get("nodeToNodeEncryption") or {}).get("enabled") is not True:
        problems.append("node_to_node_encryption is off")
    if (props.get("domainEndpointOptions") or {}).get("enforceHttps") is not True:
        problems.append("enforce_https is off")
    if problems:
        report(f"OpenSearch domain '{args.name}': {'; '.join(problems)}, so logs can be read off the wire, the disk "
               f"or the internet. Fix: vpc_options in private subnets, encrypt_at_rest and node_to_node_encryption "
               f"enabled, domain_endpoint_options enforce_https (LogSearchDomain does all four).", args.urn)


LOG_GROUP_RETENTION = ResourceValidationPolicy(
    name="log-group-retention",
    description="CloudWatch log groups expire their events (retention_in_days set).",
    validate=_retention, enforcement_level=EnforcementLevel.MANDATORY,
    url="https://docs.aws.amazon.com/AmazonCloudWatch/latest/logs/Working-with-log-groups-and-streams.html",
)
LOG_GROUP_KMS = ResourceValidationPolicy(
    name="log-group-kms",
    description="CloudWatch log groups are encrypted with a customer-managed KMS key.",
    validate=_kms, enforcement_level=EnforcementLevel.MANDATORY,
    url="https://docs.aws.amazon.com/AmazonCloudWatch/latest/logs/encrypt-log-data-kms.html",
)
OPENSEARCH_PRIVATE_ENCRYPTED = ResourceValidationPolicy(
    name="opensearch-private-encrypted",
    description="OpenSearch domains are VPC-only, encrypted at rest and node to node, and HTTPS-only.",
    validate=_private_encrypted, enforcement_level=EnforcementLevel.MANDATORY,
    url="https://docs.aws.amazon.com/opensearch-service/latest/developerguide/security.html",
)

POLICIES: Final = (LOG_GROUP_RETENTION, LOG_GROUP_KMS, OPENSEARCH_PRIVATE_ENCRYPTED)
"""The logging rules."""
