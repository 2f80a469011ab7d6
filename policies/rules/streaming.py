"""Amazon MSK: TLS only, a customer KMS key at rest, authenticated clients, broker logs, private brokers, and three
zones in production.

The wire keys are pulumi-aws's `aws:msk/cluster:Cluster` inputs (encryptionInfo, clientAuthentication, loggingInfo,
brokerNodeGroupInfo). Where a key is absent MSK's own default applies: in-transit TLS between clients and brokers and
inside the cluster (both on by default), an AWS-managed key at rest, and unauthenticated access when no client
authentication is given (MSK API Reference, EncryptionInTransit and ClientAuthentication).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
)

from policies.environment import ENVIRONMENT_SCHEMA, is_production
from policies.wire import as_list, quantity

MSK_CLUSTER: Final = "aws:msk/cluster:Cluster"
_GUIDE = "https://docs.aws.amazon.com/msk/latest/developerguide"


def _at(props: Mapping[str, Any], *path: str) -> Any:
    """The value at `path` of nested wire objects (a one-item list counts as its item); None when absent."""
    value: Any = props
    for key in path:
        items = as_list(value)
        value = items[0].get(key) if items and isinstance(items[0], Mapping) else None
    return value


def _encryption(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != MSK_CLUSTER:
        return
    problems = []
    client_broker = _at(args.props, "encryptionInfo", "encryptionInTransit", "clientBroker") or "TLS"
    if client_broker != "TLS":
        problems.append(f"clients may connect in plain text (client_broker {client_broker})")
    if _at(args.props, "encryptionInfo", "encryptionInTransit", "inCluster") is False:
        problems.append("brokers replicate in plain text (in_cluster false)")
    if not _at(args.props, "encryptionInfo", "encryptionAtRestKmsKeyArn"):
        problems.append("data at rest uses an AWS-managed key, not one of ours")
    if problems:
        report(f"MSK cluster '{args.name}': {'; '.join(problems)}. Fix: encryption_info with encryption_in_transit "
               f"client_broker 'TLS', in_cluster True and encryption_at_rest_kms_key_arn of a customer key "
               f"(Streaming does this).", args.urn)


def _client_auth(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != MSK_CLUSTER:
        return
    auth = args.props.get("clientAuthentication")
    # IAM or SCRAM over SASL, or mutual TLS with a private CA, identifies every client.
    authenticated = bool(_at(auth, "sasl", "iam") or _at(auth, "sasl", "scram")
                         or as_list(_at(auth, "tls", "certificateAuthorityArns"))) if auth else False
    open_door = not auth or _at(auth, "unauthenticated") is True
    if open_door or not authenticated:
        report(f"MSK cluster '{args.name}' admits clients without credentials ("
               f"{'unauthenticated access on' if open_door else 'no SASL/IAM, SCRAM or TLS client auth'}), so any pod "
               f"that reaches it reads and writes every topic. Fix: client_authentication sasl iam True and "
               f"unauthenticated False (Streaming does this).", args.urn)


def _broker_logs(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != MSK_CLUSTER:
        return
    logs = _at(args.props, "loggingInfo", "brokerLogs")
    if not any(_at(logs, sink, "enabled") is True for sink in ("cloudwatchLogs", "s3", "firehose")):
        report(f"MSK cluster '{args.name}' keeps no broker logs, so authentication failures and broker errors leave "
               f"no trace. Fix: logging_info broker_logs cloudwatch_logs enabled with a log group (Streaming does "
               f"this).", args.urn)


def _private(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != MSK_CLUSTER:
        return
    access = _at(args.props, "brokerNodeGroupInfo", "connectivityInfo", "publicAccess", "type")
    if access not in (None, "DISABLED"):
        report(f"MSK cluster '{args.name}' has public access {access}, so its brokers answer from the internet. Fix: "
               f"broker_node_group_info connectivity_info public_access type 'DISABLED'.", args.urn)


def _multi_az(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != MSK_CLUSTER or not is_production(args.get_config() or {}):
        return
    zones = len(as_list(_at(args.props, "brokerNodeGroupInfo", "clientSubnets")))
    brokers = quantity(args.props.get("numberOfBrokerNodes")) or 0
    if zones < 3 or brokers < 3:
        report(f"MSK cluster '{args.name}' in a production stack spans {zones} zones with {int(brokers)} brokers, so "
               f"one zone lost leaves replication 3 topics without a quorum. Fix: modelplane:streaming zones: 3.",
               args.urn)


MSK_ENCRYPTION = ResourceValidationPolicy(
    name="msk-encryption",
    description="MSK clusters use TLS only, between clients and brokers and inside the cluster, and a customer KMS "
                "key at rest.",
    validate=_encryption, enforcement_level=EnforcementLevel.MANDATORY, url=f"{_GUIDE}/msk-encryption.html",
)
MSK_CLIENT_AUTH = ResourceValidationPolicy(
    name="msk-client-auth",
    description="MSK clusters authenticate every client (SASL/IAM, SCRAM or mutual TLS); unauthenticated access is off.",
    validate=_client_auth, enforcement_level=EnforcementLevel.MANDATORY, url=f"{_GUIDE}/iam-access-control.html",
)
MSK_BROKER_LOGS = ResourceValidationPolicy(
    name="msk-broker-logs",
    description="MSK clusters ship broker logs (CloudWatch Logs, S3 or Firehose).",
    validate=_broker_logs, enforcement_level=EnforcementLevel.MANDATORY, url=f"{_GUIDE}/msk-logging.html",
)
MSK_PRIVATE = ResourceValidationPolicy(
    name="msk-private",
    description="MSK brokers have no public access.",
    validate=_private, enforcement_level=EnforcementLevel.MANDATORY, url=f"{_GUIDE}/public-access.html",
)
MSK_MULTI_AZ_PRODUCTION = ResourceValidationPolicy(
    name="msk-multi-az-production",
    description="In production, MSK brokers span three availability zones.",
    validate=_multi_az, enforcement_level=EnforcementLevel.MANDATORY,
    config_schema=PolicyConfigSchema(properties=dict(ENVIRONMENT_SCHEMA)),
    url=f"{_GUIDE}/bestpractices.html",
)

POLICIES: Final = (MSK_ENCRYPTION, MSK_CLIENT_AUTH, MSK_BROKER_LOGS, MSK_PRIVATE, MSK_MULTI_AZ_PRODUCTION)
"""The MSK rules."""
