"""The NetworkPolicies of one `InferenceService` (infra/k8s/inference.py), on top of the inference namespace's
default-deny (infra/k8s/netpol.py).

The pods clients reach admit the ingress gateway on their port, and Prometheus when it scrapes. With a gated
runtime (vllm, recommend) those are the caching gateway's pods, and the runtime's pods admit only this service's
gateway (and Prometheus) on the runtime's port. Egress: the model store for the runtime, Redis for whichever pod
uses it, istiod for sidecars; DNS is namespace-wide.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi

from infra.config.workloads import InferenceServiceConfig
from infra.k8s.inference_runtimes import GATED_RUNTIMES, GATEWAY_PORT, PORTS
from infra.k8s.mesh import from_ingress_gateway, sidecar_egress
from infra.k8s.netpol import Rule, allow_spec, egress, ingress, network_policy, pod_peer, select, tcp
from infra.k8s.observability import from_prometheus
from workloads.common.vocab import NAME_LABEL


@dataclass(frozen=True, kw_only=True)
class NetworkAccess:
    """What a service's NetworkPolicies admit and reach beyond its own pods."""

    mesh: bool
    """Sidecars (istiod egress), and the ingress gateway as the clients."""
    scraped: bool
    """Prometheus scrapes the service."""
    egress_rules: Sequence[Rule]
    """The runtime's egress to the model store (S3 or MinIO)."""
    redis_egress: Sequence[Rule]
    """Egress to the stack's Redis."""


def service_network_policies(parent: pulumi.Resource, name: str, namespace: str, svc: InferenceServiceConfig,
                             labels: dict[str, str], *, cached: bool, access: NetworkAccess) -> None:
    """The runtime's policy, and with a gated runtime the gateway's (children of `parent`, labelled `labels`);
    `cached` says the service has a response cache (its client-facing pod uses Redis)."""
    child = pulumi.ResourceOptions(parent=parent)
    gated, port = svc.runtime in GATED_RUNTIMES, PORTS[svc.runtime]
    runtime = f"{name}{GATED_RUNTIMES[svc.runtime]}" if gated else name
    sidecar = [sidecar_egress()] if access.mesh else []
    scrape = [from_prometheus(port)] if access.scraped else []
    # Our server caches in Redis itself; the recommendation service reads its features there.
    runtime_redis = svc.runtime == "recommend" or (svc.runtime == "modelplane-serve" and cached)
    clients = [from_ingress_gateway(port)] if access.mesh else []
    if gated:
        clients = [ingress([pod_peer({NAME_LABEL: name})], tcp(port))]
    network_policy(f"{runtime}-netpol", policy_name=runtime, namespace=namespace, labels=labels, opts=child,
                   spec=allow_spec(select({NAME_LABEL: runtime}), ingress_rules=[*clients, *scrape],
                                   egress_rules=[*access.egress_rules, *sidecar,
                                                 *(access.redis_egress if runtime_redis else [])]))
    if not gated:
        return
    gateway_clients = [from_ingress_gateway(GATEWAY_PORT)] if access.mesh else []
    gateway_scrape = [from_prometheus(GATEWAY_PORT)] if access.scraped else []
    network_policy(f"{name}-netpol", policy_name=name, namespace=namespace, labels=labels, opts=child,
                   spec=allow_spec(select({NAME_LABEL: name}), ingress_rules=[*gateway_clients, *gateway_scrape],
                                   egress_rules=[egress([pod_peer({NAME_LABEL: runtime})], tcp(port)), *sidecar,
                                                 *(access.redis_egress if cached else [])]))
