"""WorkloadIdentity: one role per service account, least privilege, no wildcards."""

import json

import pulumi
import pytest

from infra.aws.identity import WorkloadIdentity
from infra.review.graph import Graph
from tests.support.graph import assert_has_props, policy_statements


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_no_allow_statement_has_a_wildcard_action(stack: str, stack_graph) -> None:  # type: ignore[no-untyped-def]
    for urn, statement in policy_statements(stack_graph(stack)):
        if statement["Effect"] != "Allow":
            continue
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        assert not [a for a in actions if "*" in a], f"{urn}: wildcard action in {statement}"


def test_trainer_and_server_are_bound_by_pod_identity(prod: Graph) -> None:
    assert_has_props(prod, "aws:eks/podIdentityAssociation:PodIdentityAssociation",
                     {"namespace": "training", "serviceAccount": "trainer", "clusterName": "modelplane-prod"})
    assert_has_props(prod, "aws:eks/podIdentityAssociation:PodIdentityAssociation",
                     {"namespace": "inference", "serviceAccount": "model-server"})


def test_workload_roles_trust_only_the_pod_identity_service(prod: Graph) -> None:
    role = prod.one("aws:iam/role:Role", "trainer-role")
    trust = json.loads(role.inputs["assumeRolePolicy"])["Statement"][0]
    assert trust["Principal"] == {"Service": ["pods.eks.amazonaws.com"]}
    assert trust["Action"] == ["sts:AssumeRole", "sts:TagSession"]


def test_server_neither_reads_secrets_manager_nor_writes_models(prod: Graph) -> None:
    # The Redis URL with its AUTH token reaches the pods as a mounted Kubernetes Secret; nothing calls Secrets Manager.
    server = [s for urn, s in policy_statements(prod) if "server-policy" in urn]
    assert server
    actions = [a for s in server for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])]
    assert not any(a.startswith("secretsmanager:") for a in actions)
    assert not any("s3:PutObject" in s["Action"] for s in server)


def test_a_workload_identity_needs_a_grant(mocked_runtime: None) -> None:
    with pytest.raises(pulumi.InputPropertiesError) as info:
        WorkloadIdentity("bad", cluster_name="c", namespace="ns", service_account="sa", grants=[])
    assert {d["property_path"] for d in info.value.errors} == {"grants"}
