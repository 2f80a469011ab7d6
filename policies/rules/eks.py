"""EKS: a public endpoint only behind a CIDR allowlist, envelope-encrypted secrets, control-plane logs."""

from __future__ import annotations

from typing import Final

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
)

from policies.rules.network import internet_wide
from policies.wire import as_list, setting

CLUSTER: Final = "aws:eks/cluster:Cluster"
_LOG_TYPES: Final = ("api", "audit", "authenticator", "controllerManager", "scheduler")


def _endpoint(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != CLUSTER:
        return
    vpc = args.props.get("vpcConfig") or {}
    # EKS defaults endpointPublicAccess to true and publicAccessCidrs to 0.0.0.0/0 when they are omitted.
    if vpc.get("endpointPublicAccess") is False:
        return
    cidrs = [str(c) for c in as_list(vpc.get("publicAccessCidrs"))] or ["0.0.0.0/0"]
    open_cidrs = [c for c in cidrs if internet_wide([c])]
    if open_cidrs:
        report(f"EKS cluster '{args.name}' exposes its API server publicly to {', '.join(open_cidrs)}. Fix: set "
               f"vpc_config.endpoint_public_access=False (reach it over the VPC/VPN), or list specific office/VPN "
               f"CIDRs in public_access_cidrs (modelplane:cluster.publicAccessCidrs).", args.urn)


def _secrets_encryption(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != CLUSTER:
        return
    configs = as_list(args.props.get("encryptionConfig"))
    encrypted = any("secrets" in as_list(c.get("resources")) and (c.get("provider") or {}).get("keyArn")
                    for c in configs if isinstance(c, dict))
    if not encrypted:
        report(f"EKS cluster '{args.name}' does not envelope-encrypt Kubernetes secrets with a KMS key. Fix: set "
               f"encryption_config with resources=['secrets'] and provider.key_arn of a customer-managed key.", args.urn)


_LOGGING_SCHEMA = PolicyConfigSchema(properties={
    "requiredLogTypes": {
        "type": "array",
        "items": {"type": "string", "enum": list(_LOG_TYPES)},
        "default": ["api", "audit", "authenticator"],
        "description": "Control-plane log types every cluster must send to CloudWatch.",
    },
})


def _logging(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != CLUSTER:
        return
    enabled = {str(t) for t in as_list(args.props.get("enabledClusterLogTypes"))}
    missing = [t for t in setting(args, _LOGGING_SCHEMA, "requiredLogTypes") if t not in enabled]
    if missing:
        report(f"EKS cluster '{args.name}' does not log {', '.join(missing)} from its control plane, so API calls "
               f"cannot be audited. Fix: add them to enabled_cluster_log_types (modelplane:cluster.logTypes).", args.urn)


_URL = "https://docs.aws.amazon.com/eks/latest/best-practices/security.html"
EKS_ENDPOINT_ALLOWLIST = ResourceValidationPolicy(
    name="eks-endpoint-allowlist",
    description="An EKS API endpoint is private, or public only to an allowlist of CIDRs (never 0.0.0.0/0).",
    validate=_endpoint, enforcement_level=EnforcementLevel.MANDATORY, url=_URL,
)
EKS_SECRETS_ENCRYPTION = ResourceValidationPolicy(
    name="eks-secrets-encryption",
    description="EKS clusters envelope-encrypt Kubernetes secrets with a KMS key.",
    validate=_secrets_encryption, enforcement_level=EnforcementLevel.MANDATORY, url=_URL,
)
EKS_CONTROL_PLANE_LOGGING = ResourceValidationPolicy(
    name="eks-control-plane-logging",
    description="EKS clusters send api, audit and authenticator control-plane logs to CloudWatch.",
    validate=_logging, enforcement_level=EnforcementLevel.MANDATORY, config_schema=_LOGGING_SCHEMA, url=_URL,
)

POLICIES: Final = (EKS_ENDPOINT_ALLOWLIST, EKS_SECRETS_ENCRYPTION, EKS_CONTROL_PLANE_LOGGING)
"""The EKS rules."""
