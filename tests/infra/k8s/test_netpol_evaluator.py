"""The test evaluator of NetworkPolicy semantics (tests/support/netpol.py) on hand-written policies, so the stack
tests that use it rest on checked ground."""

from __future__ import annotations

from typing import Any

from infra.review.graph import Graph, Resource
from tests.support.netpol import NAMESPACE, NETWORK_POLICY, NetworkModel, external, pod


def _graph(*policies: tuple[str, dict[str, Any]], namespaces: dict[str, dict[str, str]] | None = None) -> Graph:
    resources = [Resource(urn=f"urn:np:{i}", type=NETWORK_POLICY, name=f"np{i}", parent="", provider="",
                          inputs={"metadata": {"name": f"np{i}", "namespace": ns}, "spec": spec})
                 for i, (ns, spec) in enumerate(policies)]
    resources += [Resource(urn=f"urn:ns:{name}", type=NAMESPACE, name=name, parent="", provider="",
                           inputs={"metadata": {"name": name, "labels": labels}})
                  for name, labels in (namespaces or {}).items()]
    return Graph(stack="t", resources=resources)


DENY = {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}


def test_a_pod_no_policy_selects_is_open_both_ways() -> None:
    model = NetworkModel(_graph(("a", DENY)))
    assert model.admits(pod("b", {}), pod("c", {}), 80)
    assert not model.admits(pod("b", {}), pod("a", {}), 80)
    assert not model.admits(pod("a", {}), pod("b", {}), 80)


def test_pod_selector_alone_means_the_policys_namespace() -> None:
    allow = {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": [{"from": [{"podSelector": {}}]}]}
    model = NetworkModel(_graph(("a", allow)))
    assert model.admits(pod("a", {"x": "1"}, "10.0.0.1"), pod("a", {}), 80)
    assert not model.admits(pod("b", {"x": "1"}), pod("a", {}), 80)


def test_namespace_and_pod_selectors_in_one_peer_must_both_match() -> None:
    peer = {"namespaceSelector": {"matchLabels": {"team": "ml"}}, "podSelector": {"matchLabels": {"app": "p"}}}
    allow = {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": [{"from": [peer], "ports": [{"port": 9090}]}]}
    model = NetworkModel(_graph(("a", allow), namespaces={"m": {"team": "ml"}}))
    assert model.admits(pod("m", {"app": "p"}), pod("a", {}), 9090)
    assert not model.admits(pod("m", {"app": "q"}), pod("a", {}), 9090)
    assert not model.admits(pod("n", {"app": "p"}), pod("a", {}), 9090)
    assert not model.admits(pod("m", {"app": "p"}), pod("a", {}), 9091)


def test_match_expressions_named_ports_and_ip_block_except() -> None:
    selected = {"matchExpressions": [{"key": "role", "operator": "NotIn", "values": ["quiet"]}]}
    egress = {"podSelector": selected, "policyTypes": ["Egress"], "egress": [
        {"to": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.9.0.0/16"]}}], "ports": [{"port": "web"}]}]}
    model = NetworkModel(_graph(("a", DENY), ("a", egress)))
    web = pod("b", {}, "10.1.0.5", {"web": 8080})
    assert model.admits(pod("a", {}), web, 8080)
    assert not model.admits(pod("a", {}), web, 8081)
    assert not model.admits(pod("a", {"role": "quiet"}), web, 8080)
    assert not model.admits(pod("a", {}), pod("b", {}, "10.9.0.5", {"web": 8080}), 8080)
    assert not model.admits(pod("a", {}), external("192.0.2.1"), 8080)


def test_without_policy_types_an_empty_egress_list_does_not_isolate_egress() -> None:
    # policyTypes defaults to Ingress, plus Egress only when the spec has egress rules (an empty list has none).
    empty = {"podSelector": {}, "ingress": [{"from": [{"podSelector": {}}]}], "egress": []}
    model = NetworkModel(_graph(("a", empty)))
    assert model.egress_allows(pod("a", {}), external("192.0.2.1"), 443)
    assert not model.admits(pod("b", {}), pod("a", {}), 80)
    ruled = {**empty, "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]}]}
    model = NetworkModel(_graph(("a", ruled)))
    assert not model.egress_allows(pod("a", {}), external("192.0.2.1"), 443)
    assert model.egress_allows(pod("a", {}), external("10.1.0.1"), 443)
