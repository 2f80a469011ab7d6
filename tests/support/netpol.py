"""A small evaluator of Kubernetes NetworkPolicy semantics over a rendered graph, for tests.

No maintained Python library evaluates NetworkPolicies (kube-netpol 1.0.0's simulator ignores namespace selectors
and matchExpressions; the Go tools are not usable here), so this follows the API reference
(kubernetes.io/docs/concepts/services-networking/network-policies/ and the networking.k8s.io/v1 NetworkPolicy
reference):
- a pod is isolated for ingress (egress) when some policy of its namespace selects it and lists Ingress (Egress)
  in policyTypes (when absent: Ingress, and Egress when the spec has a non-empty list of egress rules);
- an isolated pod admits a connection when any rule of any policy selecting it matches the peer and the port;
  policies only add;
- a connection between two pods needs both the source's egress and the destination's ingress;
- a peer with podSelector alone means pods of the policy's namespace; namespaceSelector alone, all pods of the
  matching namespaces; both, the matching pods of the matching namespaces; ipBlock, addresses (pods included, as
  most implementations apply it to pod IPs too), minus `except`;
- a rule without `from`/`to` matches every peer, without `ports` every port; a named port resolves against the
  destination pod's container ports.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from infra.k8s.netpol import NAMESPACE_NAME_LABEL
from infra.review.graph import Graph
from tests.support.training import jobset_pod, train_job_pod

NETWORK_POLICY = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
"""Type token of a NetworkPolicy in the graph."""
NAMESPACE = "kubernetes:core/v1:Namespace"
"""Type token of a Namespace in the graph."""


@dataclass(frozen=True)
class Endpoint:
    """One end of a connection: a pod (namespace and labels) or an address outside the cluster (namespace None)."""

    ip: str
    """Its address (a pod's IP, or e.g. an AWS endpoint's)."""
    namespace: str | None = None
    """The pod's namespace; None for an address outside the cluster's pods."""
    labels: Mapping[str, str] = field(default_factory=dict)
    """The pod's labels."""
    ports: Mapping[str, int] = field(default_factory=dict)
    """The pod's named container ports."""


def pod(namespace: str, labels: Mapping[str, str], ip: str = "10.0.0.10",
        ports: Mapping[str, int] | None = None) -> Endpoint:
    """A pod endpoint."""
    return Endpoint(ip=ip, namespace=namespace, labels=dict(labels), ports=dict(ports or {}))


def external(ip: str) -> Endpoint:
    """An address that is not a pod (the API server, S3, a client of the load balancer)."""
    return Endpoint(ip=ip)


def selector_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """A LabelSelector against labels; an empty selector matches everything."""
    selector = selector or {}
    if any(labels.get(key) != value for key, value in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values") or []
        present = key in labels
        ok = {"In": present and labels.get(key) in values, "NotIn": not present or labels.get(key) not in values,
              "Exists": present, "DoesNotExist": not present}.get(operator)
        if ok is None:
            raise ValueError(f"unknown matchExpressions operator {operator!r}")
        if not ok:
            return False
    return True


class NetworkModel:
    """The NetworkPolicies and namespace labels of a graph, asked whether connections are admitted."""

    def __init__(self, graph: Graph) -> None:
        self.policies: list[tuple[str, dict[str, Any]]] = [
            (r.inputs["metadata"]["namespace"], r.inputs["spec"]) for r in graph.of_type(NETWORK_POLICY)]
        self.namespace_labels: dict[str, dict[str, str]] = {}
        for resource in graph.of_type(NAMESPACE):
            metadata = resource.inputs["metadata"]
            self.namespace_labels[metadata["name"]] = dict(metadata.get("labels") or {})

    def policies_in(self, namespace: str) -> list[dict[str, Any]]:
        """The specs of the policies in `namespace`."""
        return [spec for ns, spec in self.policies if ns == namespace]

    def _labels_of(self, namespace: str) -> dict[str, str]:
        return {**self.namespace_labels.get(namespace, {}), NAMESPACE_NAME_LABEL: namespace}

    def _peer_matches(self, peer: Mapping[str, Any], policy_ns: str, other: Endpoint) -> bool:
        if "ipBlock" in peer:
            block = peer["ipBlock"]
            address = ipaddress.ip_address(other.ip)
            return address in ipaddress.ip_network(block["cidr"]) and not any(
                address in ipaddress.ip_network(cidr) for cidr in block.get("except") or [])
        if other.namespace is None:
            return False
        if "namespaceSelector" in peer:
            if not selector_matches(peer["namespaceSelector"], self._labels_of(other.namespace)):
                return False
        elif other.namespace != policy_ns:
            return False
        return selector_matches(peer.get("podSelector"), other.labels)

    @staticmethod
    def _port_matches(ports: list[Mapping[str, Any]] | None, port: int, protocol: str, dest: Endpoint) -> bool:
        if not ports:
            return True
        for entry in ports:
            if entry.get("protocol", "TCP") != protocol:
                continue
            number = entry.get("port")
            if number is None:
                return True
            if isinstance(number, str):
                if dest.ports.get(number) == port:
                    return True
                continue
            if number <= port <= entry.get("endPort", number):
                return True
        return False

    def _allowed(self, subject: Endpoint, other: Endpoint, dest: Endpoint, port: int, protocol: str,
                 direction: str) -> bool:
        """Whether `subject`'s policies let it talk to `other` (ingress: other is the source)."""
        assert subject.namespace is not None
        key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
        selecting = [spec for spec in self.policies_in(subject.namespace)
                     if selector_matches(spec.get("podSelector"), subject.labels)
                     and direction in spec.get("policyTypes", ["Ingress", *(["Egress"] if spec.get("egress") else [])])]
        if not selecting:
            return True
        for spec in selecting:
            for rule in spec.get(key) or []:
                peers = rule.get(peers_key) or []
                if (not peers or any(self._peer_matches(p, subject.namespace, other) for p in peers)) \
                        and self._port_matches(rule.get("ports"), port, protocol, dest):
                    return True
        return False

    def egress_allows(self, source: Endpoint, dest: Endpoint, port: int, protocol: str = "TCP") -> bool:
        """Whether `source`'s own policies let it open the connection (the destination's side not considered)."""
        return self._allowed(source, dest, dest, port, protocol, "Egress")

    def admits(self, source: Endpoint, dest: Endpoint, port: int, protocol: str = "TCP") -> bool:
        """Whether a connection from `source` to `dest` on `port` passes both ends' policies."""
        egress_ok = source.namespace is None or self._allowed(source, dest, dest, port, protocol, "Egress")
        ingress_ok = dest.namespace is None or self._allowed(dest, source, dest, port, protocol, "Ingress")
        return egress_ok and ingress_ok


def pod_template_labels(graph: Graph, kind: str, name: str) -> dict[str, str]:
    """The pod labels of the rendered object `kind`/`name` (Deployment, Job; a TrainJob's: its runtime template's
    with its patches'; a JobSet's: its template's), without those the controllers add."""
    for resource in graph.kubernetes_objects():
        inputs = resource.inputs
        if inputs.get("kind") != kind or inputs.get("metadata", {}).get("name") != name:
            continue
        if kind == "TrainJob":
            return dict(train_job_pod(graph, inputs)["metadata"]["labels"])
        if kind == "JobSet":
            return dict(jobset_pod(inputs)["metadata"]["labels"])
        return dict(inputs["spec"]["template"]["metadata"]["labels"])
    raise LookupError(f"no {kind} named {name!r} rendered")
