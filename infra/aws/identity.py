"""`WorkloadIdentity`: one IAM role per Kubernetes service account, built only from grants."""

from __future__ import annotations

from collections.abc import Sequence

import pulumi
import pulumi_aws as aws

from infra.aws.iam import Grant, pod_identity_trust_policy, policy_document


class WorkloadIdentity(pulumi.ComponentResource):
    """An IAM role bound to one service account, with a least-privilege inline policy."""

    role_arn: pulumi.Output[str]
    """The role's ARN."""
    service_account: str
    """The bound service account."""
    namespace: str
    """The service account's namespace."""

    def __init__(self, name: str, *, cluster_name: pulumi.Input[str], namespace: str, service_account: str,
                 grants: Sequence[Grant], opts: pulumi.ResourceOptions | None = None) -> None:
        """Bind `namespace/service_account` of `cluster_name` by EKS Pod Identity to a role allowed only `grants`
        (`grant_*` results, never hand-written statements)."""
        super().__init__("modelplane:identity:WorkloadIdentity", name, None, opts)
        if not grants:
            raise pulumi.InputPropertiesError("invalid WorkloadIdentity args", [pulumi.InputPropertyErrorDetails(
                property_path="grants", reason="must hold at least one grant; a role with no permissions is a mistake",
            )])
        child = pulumi.ResourceOptions(parent=self)
        self.namespace = namespace
        self.service_account = service_account
        trust = pod_identity_trust_policy(cluster_name, namespace, service_account)
        role = aws.iam.Role(f"{name}-role", assume_role_policy=trust,
                            description=f"modelplane workload {namespace}/{service_account}", opts=child)
        statements = [statement for grant in grants for statement in grant.statements]
        aws.iam.RolePolicy(f"{name}-policy", role=role.id, policy=policy_document(statements), opts=child)
        aws.eks.PodIdentityAssociation(f"{name}-association", cluster_name=cluster_name, namespace=namespace,
                                       service_account=service_account, role_arn=role.arn, opts=child)
        self.role_arn = role.arn
        self.register_outputs({"role_arn": self.role_arn})

