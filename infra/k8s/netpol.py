"""NetworkPolicies as data: default-deny per owned namespace, and the builders of the explicit allows.

Every namespace the platform owns gets `default-deny` (all its pods, ingress and egress, no rule) and `allow-dns`
(egress to the cluster DNS): Kubernetes NetworkPolicies are allow-lists that add up, so a pod then reaches, and is
reached by, exactly what some policy selecting it allows (https://kubernetes.io/docs/concepts/services-networking/
network-policies/, "Default policies"). Each component adds the allows its own pods need, built here.

Peers outside the cluster's pods (S3, MSK, ElastiCache, the API server, the EKS Pod Identity agent) have no pod or
namespace to select: those egress rules name ports, and the IP range where one is fixed. Pods that call the
Kubernetes API get `to_kube_api()`; webhooks and aggregated APIs are called by the API server, whose address is
not a pod either, so their ports admit any source (`from_anywhere`).

This module imports only podspec (itself a leaf of the k8s package) and the shared vocabulary, so every component,
`Namespaces` included, can use it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

import pulumi
import pulumi_kubernetes as k8s

from infra.k8s.podspec import manifest_block
from workloads.common.vocab import MANAGED_BY_LABELS

Rule = dict[str, Any]
"""One ingress or egress rule of a NetworkPolicy spec."""

NAMESPACE_NAME_LABEL: Final = "kubernetes.io/metadata.name"
"""The label the API server sets on every namespace to its name (Kubernetes >= 1.22), for namespace peers."""
DNS_NAMESPACE: Final = "kube-system"
"""Where the cluster DNS runs (CoreDNS on EKS, kind and minikube)."""
DNS_POD_LABELS: Final = {"k8s-app": "kube-dns"}
"""Labels of the cluster DNS pods: CoreDNS keeps kube-dns's label on EKS (the coredns add-on), kind and minikube."""
DNS_PORT: Final = 53
"""Cluster DNS, over UDP and TCP."""
ISTIOD_XDS_PORT: Final = 15012
"""istiod's xDS and certificate port, which a sidecar or gateway must reach (istio.io, "Ports used by Istio")."""
ISTIOD_WEBHOOK_PORT: Final = 15017
"""istiod's injection and validation webhook port, called by the API server (istio.io, "Ports used by Istio")."""
KUBE_API_PORTS: Final = (443, 6443)
"""The API server's ports: 443 on EKS (the `kubernetes` Service and the endpoint), 6443 on kind and kubeadm."""
HTTPS_PORT: Final = 443
"""AWS service endpoints (S3, CloudWatch Logs, OpenSearch, STS)."""
ANYWHERE: Final = "0.0.0.0/0"
"""Every IPv4 address, for peers whose addresses are not fixed."""
POD_IDENTITY_AGENT: Final = ("169.254.170.23/32", 80)
"""The EKS Pod Identity agent's link-local address and port, where the AWS SDK fetches the role's credentials
(docs.aws.amazon.com/eks/latest/userguide/pod-id-how-it-works.html)."""
DEFAULT_DENY: Final = "default-deny"
"""Name of the namespace-wide deny-all policy (policies/rules/netpol.py recognises one by its shape, not name)."""
ALLOW_DNS: Final = "allow-dns"
"""Name of the namespace-wide DNS egress policy."""


def tcp(*ports: int | str) -> list[dict[str, Any]]:
    """NetworkPolicy ports: each TCP port (a number, or a container port's name)."""
    return [{"protocol": "TCP", "port": port} for port in ports]


def namespace_peer(namespace: str, pod_labels: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A peer: the pods of `namespace` (those with `pod_labels`, when given)."""
    peer: dict[str, Any] = {"namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: namespace}}}
    if pod_labels is not None:
        peer["podSelector"] = {"matchLabels": dict(pod_labels)}
    return peer


def pod_peer(pod_labels: Mapping[str, str]) -> dict[str, Any]:
    """A peer: the pods with `pod_labels` in the policy's own namespace."""
    return {"podSelector": {"matchLabels": dict(pod_labels)}}


def ip_peer(cidr: str) -> dict[str, Any]:
    """A peer: the addresses of `cidr`."""
    return {"ipBlock": {"cidr": cidr}}


def any_pod_peer() -> dict[str, Any]:
    """A peer: every pod of every namespace (not addresses outside the cluster)."""
    return {"namespaceSelector": {}}


def _rule(direction: str, peers: Sequence[dict[str, Any]], ports: Sequence[dict[str, Any]]) -> Rule:
    out: Rule = {direction: list(peers)}
    if ports:
        out["ports"] = list(ports)
    return out


def ingress(peers: Sequence[dict[str, Any]], ports: Sequence[dict[str, Any]] = ()) -> Rule:
    """An ingress rule admitting `peers` on `ports` (every port when empty)."""
    return _rule("from", peers, ports)


def egress(peers: Sequence[dict[str, Any]], ports: Sequence[dict[str, Any]] = ()) -> Rule:
    """An egress rule to `peers` on `ports` (every port when empty)."""
    return _rule("to", peers, ports)


def same_namespace() -> dict[str, Any]:
    """A peer: every pod of the policy's own namespace."""
    return {"podSelector": {}}


def to_anything() -> Rule:
    """Egress anywhere on any port (a scraper whose targets include the nodes' own addresses)."""
    return {}


def from_anywhere(*ports: int | str) -> Rule:
    """Ingress on `ports` from any source: the API server calling a webhook, or clients of a load balancer."""
    return {"ports": tcp(*ports)}


def to_ports(*ports: int) -> Rule:
    """Egress to `ports` at any address: managed services (MSK, ElastiCache) whose node addresses change with
    failovers; their security groups admit only the cluster."""
    return {"ports": tcp(*ports)}


def to_kube_api() -> Rule:
    """Egress to the Kubernetes API, for pods that call it. The endpoint's addresses are the control plane's, not
    fixed (EKS moves its ENIs on upgrades), so the rule names the ports only."""
    return egress([ip_peer(ANYWHERE)], tcp(*KUBE_API_PORTS))


def to_https() -> Rule:
    """Egress to AWS endpoints on 443 at any address. S3 answers on AWS's public ranges, which its VPC gateway
    endpoint routes privately; a NetworkPolicy cannot name the endpoint's prefix list, and the ranges change
    (ip-ranges.json), so no narrower CIDR stays correct."""
    return egress([ip_peer(ANYWHERE)], tcp(HTTPS_PORT))


def to_pod_identity() -> Rule:
    """Egress to the EKS Pod Identity agent, for pods whose ServiceAccount has an IAM role."""
    cidr, port = POD_IDENTITY_AGENT
    return egress([ip_peer(cidr)], tcp(port))


def to_istiod(mesh_namespace: str) -> Rule:
    """Egress to istiod's xDS/certificate port, for pods with an Istio sidecar (or a gateway)."""
    return egress([namespace_peer(mesh_namespace)], tcp(ISTIOD_XDS_PORT))


def default_deny_spec() -> dict[str, Any]:
    """Select every pod, for ingress and egress, and allow nothing."""
    return {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}


def dns_spec() -> dict[str, Any]:
    """Every pod may query the cluster DNS."""
    ports = [{"protocol": "UDP", "port": DNS_PORT}, *tcp(DNS_PORT)]
    return {"podSelector": {}, "policyTypes": ["Egress"],
            "egress": [egress([namespace_peer(DNS_NAMESPACE, DNS_POD_LABELS)], ports)]}


def select(pod_labels: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A pod selector: the pods with `pod_labels`, or (None) every pod of the namespace."""
    return {"matchLabels": dict(pod_labels)} if pod_labels else {}


def allow_spec(pod_selector: dict[str, Any], *, ingress_rules: Sequence[Rule] | None = None,
               egress_rules: Sequence[Rule] | None = None) -> dict[str, Any]:
    """A policy for the pods `pod_selector` matches allowing `ingress_rules` and `egress_rules`; a direction left
    None is not part of the policy (default-deny still covers it)."""
    spec: dict[str, Any] = {"podSelector": pod_selector}
    types = []
    if ingress_rules is not None:
        types.append("Ingress")
        spec["ingress"] = list(ingress_rules)
    if egress_rules is not None:
        types.append("Egress")
        spec["egress"] = list(egress_rules)
    if not types:
        raise ValueError("a NetworkPolicy needs ingress_rules or egress_rules (else it allows nothing)")
    spec["policyTypes"] = types
    return spec


def network_policy(name: str, *, policy_name: str, namespace: pulumi.Input[str], spec: dict[str, Any],
                   opts: pulumi.ResourceOptions, labels: Mapping[str, str] | None = None
                   ) -> k8s.networking.v1.NetworkPolicy:
    """The NetworkPolicy `policy_name` in `namespace` (logical name `name`)."""
    metadata: k8s.meta.v1.ObjectMetaArgsDict = {
        "name": policy_name, "namespace": namespace,
        "labels": {**MANAGED_BY_LABELS, **(labels or {})}}
    return k8s.networking.v1.NetworkPolicy(name, metadata=metadata, spec=manifest_block(spec), opts=opts)


def namespace_baseline(name: str, namespace: pulumi.Input[str], opts: pulumi.ResourceOptions) -> None:
    """`default-deny` and `allow-dns` in `namespace` (logical names `<name>-default-deny`, `<name>-allow-dns`)."""
    network_policy(f"{name}-{DEFAULT_DENY}", policy_name=DEFAULT_DENY, namespace=namespace,
                   spec=default_deny_spec(), opts=opts)
    network_policy(f"{name}-{ALLOW_DNS}", policy_name=ALLOW_DNS, namespace=namespace, spec=dns_spec(), opts=opts)
