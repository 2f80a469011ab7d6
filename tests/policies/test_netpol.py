"""k8s-namespace-default-deny: every namespace the platform owns has a default-deny NetworkPolicy."""

from collections.abc import Callable

import pytest

from infra.review.graph import Graph
from policies.rules.netpol import K8S_NAMESPACE_DEFAULT_DENY
from tests.policies.helpers import Res, k8s, k8s_type, stack_violations, urn

OWNER = {"app.kubernetes.io/managed-by": "modelplane"}
DENY_ALL = {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}


def namespace(name: str, labels: dict | None = None) -> Res:
    obj = k8s("v1", "Namespace", name, {}, namespace=None, labels=OWNER if labels is None else labels)
    return Res(k8s_type(obj), f"ns-{name}", obj)


def netpol(ns: str, spec: dict, name: str = "default-deny") -> Res:
    obj = k8s("networking.k8s.io/v1", "NetworkPolicy", name, spec, namespace=ns)
    return Res(k8s_type(obj), f"{ns}-{name}", obj)


TRAINING = namespace("training")


def test_owned_namespace_with_default_deny_complies() -> None:
    allow_dns = netpol("training", {"podSelector": {}, "policyTypes": ["Egress"],
                                    "egress": [{"ports": [{"port": 53, "protocol": "UDP"}]}]}, name="dns")
    assert stack_violations(K8S_NAMESPACE_DEFAULT_DENY, [TRAINING, netpol("training", DENY_ALL), allow_dns]) == []


def test_owned_namespace_without_any_policy_is_reported_on_the_namespace() -> None:
    found = stack_violations(K8S_NAMESPACE_DEFAULT_DENY, [TRAINING])
    assert [u for u, _ in found] == [urn(TRAINING.type, TRAINING.name)]
    assert "Namespace training has no default-deny NetworkPolicy for Ingress and Egress" in found[0][1]
    assert "podSelector: {}, policyTypes: [Ingress, Egress]" in found[0][1]


def test_a_default_deny_in_another_namespace_does_not_count() -> None:
    found = stack_violations(K8S_NAMESPACE_DEFAULT_DENY, [TRAINING, namespace("inference"), netpol("inference", DENY_ALL)])
    assert len(found) == 1 and "Namespace training " in found[0][1]


@pytest.mark.parametrize(("spec", "missing"), [
    ({"podSelector": {}, "policyTypes": ["Ingress"]}, "Egress"),
    ({"podSelector": {}}, "Egress"),
    ({"podSelector": {}, "policyTypes": ["Egress"]}, "Ingress"),
    ({"podSelector": {"matchLabels": {"app": "trainer"}}, "policyTypes": ["Ingress", "Egress"]}, "Ingress and Egress"),
    ({"podSelector": {}, "policyTypes": ["Ingress", "Egress"], "ingress": [{}]}, "Ingress"),
    ({"podSelector": {}, "policyTypes": ["Ingress", "Egress"], "egress": [{"to": [{"podSelector": {}}]}]}, "Egress"),
])
def test_policies_that_are_not_a_full_default_deny_are_reported(spec: dict, missing: str) -> None:
    found = stack_violations(K8S_NAMESPACE_DEFAULT_DENY, [TRAINING, netpol("training", spec)])
    assert len(found) == 1 and f"no default-deny NetworkPolicy for {missing}," in found[0][1]


def test_one_policy_per_direction_is_a_default_deny_too() -> None:
    ingress = netpol("training", {"podSelector": {"matchLabels": {}}, "policyTypes": ["Ingress"]}, name="deny-in")
    egress = netpol("training", {"podSelector": {}, "policyTypes": ["Egress"]}, name="deny-out")
    assert stack_violations(K8S_NAMESPACE_DEFAULT_DENY, [TRAINING, ingress, egress]) == []


def test_namespaces_the_platform_does_not_own_are_out_of_scope() -> None:
    assert stack_violations(K8S_NAMESPACE_DEFAULT_DENY, [namespace("team-a", labels={"team": "a"})]) == []


def test_configured_namespaces_need_a_default_deny_even_when_not_rendered() -> None:
    config = {"namespaces": ["kube-system"]}
    found = stack_violations(K8S_NAMESPACE_DEFAULT_DENY, [], config=config)
    assert found == [("", found[0][1])] and "Namespace kube-system " in found[0][1]
    assert stack_violations(K8S_NAMESPACE_DEFAULT_DENY, [netpol("kube-system", DENY_ALL)], config=config) == []


def test_the_owner_label_is_configurable() -> None:
    labelled = namespace("lab", labels={"owner": "ml"})
    assert stack_violations(K8S_NAMESPACE_DEFAULT_DENY, [labelled], config={"ownerLabels": {"owner": "ml"}})
    assert stack_violations(K8S_NAMESPACE_DEFAULT_DENY, [TRAINING], config={"ownerLabels": {"owner": "ml"}}) == []


@pytest.mark.parametrize("stack", ["dev", "local", "prod", "staging"])
def test_the_rules_owner_label_marks_every_namespace_the_stacks_render(stack: str,
                                                                       stack_graph: Callable[[str], Graph]) -> None:
    # The pack keeps its own copy of the platform's label (it imports nothing else of the project).
    assert K8S_NAMESPACE_DEFAULT_DENY.config_schema is not None
    owner = K8S_NAMESPACE_DEFAULT_DENY.config_schema.properties["ownerLabels"]["default"]
    namespaces = [r.inputs for r in stack_graph(stack).resources if r.inputs.get("kind") == "Namespace"]
    assert {"inference", "training"} <= {n["metadata"]["name"] for n in namespaces}
    assert [n["metadata"]["name"] for n in namespaces if not owner.items() <= n["metadata"]["labels"].items()] == []
