"""`WorkloadIdentity`: one IAM role per Kubernetes service account, built only from grants."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import pulumi
import pulumi_aws as aws

from infra.aws.iam import Grant, policy_document, service_trust_policy


@dataclass(frozen=True, kw_only=True)
class WorkloadIdentityArgs:
    """Inputs of `WorkloadIdentity`."""

    cluster_name: pulumi.Input[str]
    """The EKS cluster."""
    namespace: str
    """Kubernetes namespace of the service account."""
    service_account: str
    """Kubernetes service account name."""
    grants: Sequence[Grant]
    """What the workload may do: only `grant_*` results, never hand-written statements."""
    mode: Literal["pod-identity", "irsa"] = "pod-identity"
    """EKS Pod Identity (default) or IRSA (needs oidc_provider_arn and oidc_issuer)."""
    oidc_provider_arn: pulumi.Input[str] | None = None
    """OIDC provider ARN, for IRSA."""
    oidc_issuer: pulumi.Input[str] | None = None
    """OIDC issuer without scheme, for IRSA."""


class WorkloadIdentity(pulumi.ComponentResource):
    """An IAM role bound to one service account, with a least-privilege inline policy."""

    role_arn: pulumi.Output[str]
    """The role's ARN (annotate the service account with it for IRSA)."""
    service_account: str
    """The bound service account."""
    namespace: str
    """The service account's namespace."""

    def __init__(self, name: str, args: WorkloadIdentityArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("modelplane:identity:WorkloadIdentity", name, None, opts)
        problems = []
        if not args.grants:
            problems.append(("grants", "must hold at least one grant; a role with no permissions is a mistake"))
        if args.mode == "irsa" and (args.oidc_provider_arn is None or args.oidc_issuer is None):
            problems.append(("oidc_provider_arn", "and oidc_issuer are required when mode is 'irsa'"))
        if problems:
            raise pulumi.InputPropertiesError("invalid WorkloadIdentity args", [
                pulumi.InputPropertyErrorDetails(property_path=key, reason=reason) for key, reason in problems
            ])
        child = pulumi.ResourceOptions(parent=self)
        self.namespace = args.namespace
        self.service_account = args.service_account
        if args.mode == "pod-identity":
            trust: pulumi.Input[str] = service_trust_policy("pods.eks.amazonaws.com",
                                                            actions=("sts:AssumeRole", "sts:TagSession"))
        else:
            trust = _irsa_trust(args)
        role = aws.iam.Role(f"{name}-role", assume_role_policy=trust,
                            description=f"modelplane workload {args.namespace}/{args.service_account}", opts=child)
        statements = [statement for grant in args.grants for statement in grant.statements]
        aws.iam.RolePolicy(f"{name}-policy", role=role.id, policy=policy_document(statements), opts=child)
        if args.mode == "pod-identity":
            aws.eks.PodIdentityAssociation(f"{name}-association", cluster_name=args.cluster_name,
                                           namespace=args.namespace, service_account=args.service_account,
                                           role_arn=role.arn, opts=child)
        self.role_arn = role.arn
        self.register_outputs({"role_arn": self.role_arn})


def _irsa_trust(args: WorkloadIdentityArgs) -> pulumi.Output[str]:
    subject = f"system:serviceaccount:{args.namespace}:{args.service_account}"
    return pulumi.Output.all(args.oidc_provider_arn, args.oidc_issuer).apply(lambda values: json.dumps({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Federated": values[0]},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {"StringEquals": {f"{values[1]}:sub": subject, f"{values[1]}:aud": "sts.amazonaws.com"}},
        }],
    }, sort_keys=True))
