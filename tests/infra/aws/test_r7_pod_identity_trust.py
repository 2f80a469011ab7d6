"""Pod Identity roles trust only their own service account, on their own cluster (EKS User Guide, pod-id-role.html)."""

import json
from typing import Any

import pytest

from infra.review.graph import Graph, Resource

POD_IDENTITY = {"Service": ["pods.eks.amazonaws.com"]}


def _bindings(graph: Graph) -> dict[str, tuple[str, str, str]]:
    """Role logical name -> (cluster, namespace, service account) of every Pod Identity binding in the graph: the
    associations, and the add-ons' own (always in kube-system)."""
    out: dict[str, tuple[str, str, str]] = {}

    def role_name(arn: str) -> str:
        # The render's role ARNs end in `<logical name>-<suffix>` (infra/review/outputs.py).
        return arn.rsplit("/", 1)[1].rsplit("-", 1)[0]

    for association in graph.of_type("aws:eks/podIdentityAssociation:PodIdentityAssociation"):
        i = association.inputs
        out[role_name(i["roleArn"])] = (i["clusterName"], i["namespace"], i["serviceAccount"])
    for addon in graph.of_type("aws:eks/addon:Addon"):
        for binding in addon.inputs.get("podIdentityAssociations") or []:
            out[role_name(binding["roleArn"])] = (addon.inputs["clusterName"], "kube-system", binding["serviceAccount"])
    return out


def _trust(role: Resource) -> dict[str, Any]:
    statements = json.loads(role.inputs["assumeRolePolicy"])["Statement"]
    assert len(statements) == 1, f"{role.urn}: {statements}"
    return dict(statements[0])


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_pod_identity_roles_trust_only_their_bound_service_account(stack: str, stack_graph) -> None:  # type: ignore[no-untyped-def]
    graph = stack_graph(stack)
    bindings = _bindings(graph)
    roles = [r for r in graph.of_type("aws:iam/role:Role") if _trust(r)["Principal"] == POD_IDENTITY]
    assert len(roles) >= 4, [r.name for r in roles]
    for role in roles:
        assert role.name in bindings, f"{role.urn}: trusted by Pod Identity but bound to no service account"
        cluster, namespace, service_account = bindings[role.name]
        assert _trust(role).get("Condition") == {"StringEquals": {
            "aws:RequestTag/eks-cluster-name": cluster,
            "aws:RequestTag/kubernetes-namespace": namespace,
            "aws:RequestTag/kubernetes-service-account": service_account,
        }}, f"{role.urn}: trust not limited to {cluster}/{namespace}/{service_account}"


def test_each_stack_trusts_only_its_own_cluster(stack_graph) -> None:  # type: ignore[no-untyped-def]
    # dev and prod may share an account: the dev cluster's trainer must not be able to assume prod's trainer role.
    trainer = {stack: _trust(stack_graph(stack).one("aws:iam/role:Role", "trainer-role"))["Condition"]["StringEquals"]
               for stack in ("dev", "prod")}
    assert trainer["prod"]["aws:RequestTag/eks-cluster-name"] == "modelplane-prod"
    assert trainer["dev"]["aws:RequestTag/eks-cluster-name"] == "modelplane-dev"
    assert trainer["prod"]["aws:RequestTag/kubernetes-service-account"] == "trainer"
    assert trainer["prod"]["aws:RequestTag/kubernetes-namespace"] == "training"


def test_addon_roles_trust_only_their_controller_service_account(prod: Graph) -> None:
    cni = _trust(prod.one("aws:iam/role:Role", "cluster-vpc-cni"))["Condition"]["StringEquals"]
    ebs = _trust(prod.one("aws:iam/role:Role", "cluster-aws-ebs-csi-driver"))["Condition"]["StringEquals"]
    assert (cni["aws:RequestTag/kubernetes-namespace"], cni["aws:RequestTag/kubernetes-service-account"]) == (
        "kube-system", "aws-node")
    assert ebs["aws:RequestTag/kubernetes-service-account"] == "ebs-csi-controller-sa"
