"""`Mesh`: Istio at one pinned version, mesh-wide STRICT mTLS and default-deny authorization.

Four Helm charts from Istio's repository, all at `modelplane:mesh.version` (a chart-version
mismatch is not representable): `base` (CRDs), `cni`, `istiod` and `gateway`. The CNI node agent sets up the
traffic redirection instead of the `istio-init` container, which needs NET_ADMIN and NET_RAW and
so would be rejected by the `restricted` Pod Security level of our workload namespaces
(https://istio.io/latest/docs/setup/additional-setup/pod-security-admission/).

Authorization, per workload namespace: an empty-spec `AuthorizationPolicy` denies every request,
then ALLOW policies admit the ingress gateway's and Prometheus's mTLS principals. Prometheus is
not meshed itself: it runs an Istio sidecar only to receive a workload certificate, which it
presents when scraping (see infra/k8s/observability.py), so the ALLOW is by principal, not by IP.

NetworkPolicies (infra/k8s/netpol.py; both namespaces start from default-deny): istiod takes xDS/certificate
requests from any pod on ISTIOD_XDS_PORT and webhook calls from the API server; istiod and the CNI agent (which
runs on the pod network, not the host's) call the Kubernetes API; the gateway takes clients on its Service's
ports and calls istiod and the serving ports of the namespaces it routes to.

Injection is data: `INJECTION` maps namespace → sidecar on/off, and `namespace_labels()` turns
it into the `istio-injection` labels the program puts on the `Namespaces` it creates, so the
mesh and the namespaces share one source of truth.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

import pulumi
import pulumi_kubernetes as k8s

from infra import versions
from infra.config.platform import MeshConfig
from infra.k8s.inference_runtimes import GATED_RUNTIMES, GATEWAY_PORT, PORTS
from infra.k8s.namespaces import INFERENCE_NAMESPACE, TRAINING_NAMESPACE, Namespaces
from infra.k8s.netpol import (
    ISTIOD_WEBHOOK_PORT,
    ISTIOD_XDS_PORT,
    Rule,
    allow_spec,
    any_pod_peer,
    egress,
    from_anywhere,
    ingress,
    namespace_peer,
    network_policy,
    select,
    tcp,
    to_istiod,
    to_kube_api,
)

SYSTEM_NAMESPACE: Final = "istio-system"
"""The Istio root namespace: istiod, the CNI agent and mesh-wide policies live here."""
INGRESS_NAMESPACE: Final = "istio-ingress"
"""Namespace of the ingress gateway."""
GATEWAY_NAME: Final = "istio-ingressgateway"
"""Release name of the gateway chart: also its Deployment, ServiceAccount and `Gateway` object name."""
TRUST_DOMAIN: Final = "cluster.local"
"""SPIFFE trust domain of workload identities (Istio's default, pinned in meshConfig)."""
INJECTION_LABEL: Final = "istio-injection"
"""Namespace label istiod's injection webhook selects on (`enabled` injects; `disabled` never does)."""
INJECTION: Final[Mapping[str, bool]] = {INFERENCE_NAMESPACE: True, TRAINING_NAMESPACE: False}
"""Serving pods get a sidecar; training pods never do (NCCL/gloo collectives must not pass through Envoy)."""
INGRESS_NAMESPACES: Final = (INFERENCE_NAMESPACE,)
"""Workload namespaces the ingress gateway may call; each has injection on (the gateway speaks mTLS only)."""
SCRAPE_PATHS: Final = ("/metrics", "/monitoring/prometheus/metrics")
"""Metrics paths of our server and of TF Serving (its monitoring config path, see infra/k8s/inference.py)."""
GATEWAY: Final = f"{INGRESS_NAMESPACE}/{GATEWAY_NAME}"
"""The ingress `Gateway` as `namespace/name`, for VirtualServices."""
GATEWAY_POD_LABELS: Final = {"istio": GATEWAY_NAME.removeprefix("istio-")}
"""Labels of the gateway's pods: the chart labels them istio=<release name without "istio-">."""
GATEWAY_SERVICE_PORTS: Final = (80, 443, 15021)
"""The gateway's container ports behind its Service: http, https and the status port load balancers probe
(service.ports, targetPort, of manifests/charts/gateway/values.yaml at the pinned version)."""
CLIENT_PORTS: Final = tuple(sorted({port for runtime, port in PORTS.items() if runtime not in GATED_RUNTIMES}
                                   | {GATEWAY_PORT}))
"""Container ports of the inference pods the gateway routes to: each ungated runtime's, and the caching
gateway's in front of the gated ones."""
ISTIOD_POD_LABELS: Final = {"app": "istiod"}
"""Labels of istiod's pods (manifests/charts/istio-control/istio-discovery/templates/deployment.yaml)."""


def principal(namespace: str, service_account: str) -> str:
    """The mTLS principal (SPIFFE identity without `spiffe://`) of a service account."""
    return f"{TRUST_DOMAIN}/ns/{namespace}/sa/{service_account}"


GATEWAY_PRINCIPAL: Final = principal(INGRESS_NAMESPACE, GATEWAY_NAME)
"""The ingress gateway's mTLS principal: the chart names its ServiceAccount after the release."""


def from_ingress_gateway(*ports: int) -> Rule:
    """Ingress from the ingress gateway's pods on `ports` (NetworkPolicy; the mesh's AuthorizationPolicy checks
    the gateway's principal on top)."""
    return ingress([namespace_peer(INGRESS_NAMESPACE, GATEWAY_POD_LABELS)], tcp(*ports))


def sidecar_egress() -> Rule:
    """Egress an Istio sidecar needs: istiod's xDS and certificate port."""
    return to_istiod(SYSTEM_NAMESPACE)


def namespace_labels() -> dict[str, dict[str, str]]:
    """The injection label of each workload namespace (for `Namespaces(labels=...)`)."""
    return {ns: {INJECTION_LABEL: "enabled" if on else "disabled"} for ns, on in sorted(INJECTION.items())}


class Mesh(pulumi.ComponentResource):
    """Istio base, CNI, istiod and ingress gateway; STRICT mTLS; default-deny authorization with explicit allows.

    Takes the `mesh` section; `aws_load_balancer` annotates the gateway Service for the AWS Load Balancer
    Controller (false leaves a plain LoadBalancer Service: kind, minikube); `scrape_principals` may GET the
    metrics paths in every workload namespace (Prometheus).
    """

    gateway: str
    """The ingress `Gateway` as `namespace/name`, for VirtualServices."""
    control_plane: pulumi.Resource
    """The istiod release: depend on it before creating meshed workloads (injection needs its webhook)."""

    def __init__(self, name: str, config: MeshConfig, *, aws_load_balancer: bool, scrape_principals: Sequence[str],
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("modelplane:mesh:Mesh", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        # istio-system runs the CNI DaemonSet (hostPath): privileged, as Istio's PSA guide says.
        # The gateway needs only the net.ipv4.ip_unprivileged_port_start sysctl, which baseline allows.
        namespaces = Namespaces(f"{name}-namespaces", {SYSTEM_NAMESPACE: "privileged", INGRESS_NAMESPACE: "baseline"},
                                opts=child)
        system_ns, ingress_ns = namespaces.names[SYSTEM_NAMESPACE], namespaces.names[INGRESS_NAMESPACE]

        base = self._release(name, "base", "istio-base", system_ns, config.version, {
            # `defaultRevision` creates the default validating webhook for Istio config.
            "defaultRevision": "default",
        }, [])
        cni = self._release(name, "cni", "istio-cni", system_ns, config.version, {}, [base])
        istiod = self._release(name, "istiod", "istiod", system_ns, config.version, {
            # Injected pods then skip istio-init (NET_ADMIN/NET_RAW) and meet `restricted`. The cni chart
            # goes after base and before istiod (manifests/charts/install-OpenShift.md at 1.29.6).
            "pilot": {"cni": {"enabled": True}},
            "autoscaleMin": config.replicas,
            "meshConfig": {"trustDomain": TRUST_DOMAIN},
        }, [base, cni])
        annotations = _load_balancer_annotations(config.gateway_scheme) if aws_load_balancer else {}
        gateway = self._release(name, "gateway", GATEWAY_NAME, ingress_ns, config.version, {
            "service": {"type": "LoadBalancer", "annotations": annotations},
            "autoscaling": {"minReplicas": config.replicas},
        }, [istiod])
        self.control_plane = istiod
        self.gateway = GATEWAY

        after_istiod = pulumi.ResourceOptions(parent=self, depends_on=[istiod])
        k8s.apiextensions.CustomResource(
            f"{name}-gateway-http", api_version="networking.istio.io/v1", kind="Gateway",
            metadata={"name": GATEWAY_NAME, "namespace": INGRESS_NAMESPACE},
            spec={
                # The chart labels its pods istio=<release name without "istio-">.
                "selector": dict(GATEWAY_POD_LABELS),
                "servers": [{"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": ["*"]}],
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=[gateway]),
        )
        # In the root namespace a PeerAuthentication is mesh-wide: sidecars accept mTLS only.
        k8s.apiextensions.CustomResource(
            f"{name}-strict-mtls", api_version="security.istio.io/v1", kind="PeerAuthentication",
            metadata={"name": "default", "namespace": SYSTEM_NAMESPACE},
            spec={"mtls": {"mode": "STRICT"}}, opts=after_istiod,
        )
        for namespace in sorted(INJECTION):
            self._authorization(name, namespace, scrape_principals, after_istiod)
        self._network_policies(name, system_ns, ingress_ns)
        self.register_outputs({"gateway": self.gateway})

    def _release(self, name: str, chart: str, release: str, namespace: pulumi.Input[str], version: str,
                 values: Mapping[str, Any], depends_on: Sequence[pulumi.Resource]) -> k8s.helm.v3.Release:
        # `name` is the Helm release name; set explicitly so Pulumi adds no random suffix (the
        # gateway's ServiceAccount, hence its principal, is named after the release).
        return k8s.helm.v3.Release(
            f"{name}-{chart}", name=release, chart=chart, version=version,
            repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=versions.ISTIO_REPO), namespace=namespace,
            values=dict(values), opts=pulumi.ResourceOptions(parent=self, depends_on=list(depends_on)),
        )

    def _network_policies(self, name: str, system_ns: pulumi.Input[str], ingress_ns: pulumi.Input[str]) -> None:
        child = pulumi.ResourceOptions(parent=self)
        network_policy(f"{name}-istiod-netpol", policy_name="istiod", namespace=system_ns, opts=child,
                       spec=allow_spec(select(ISTIOD_POD_LABELS), ingress_rules=[
                           # Sidecars and gateways of every namespace fetch config and certificates.
                           ingress([any_pod_peer()], tcp(ISTIOD_XDS_PORT)),
                           # The API server calls the injection and validation webhooks (Service 443 -> 15017).
                           from_anywhere(ISTIOD_WEBHOOK_PORT)]))
        # istiod watches the cluster; the CNI agent watches pods on its node.
        network_policy(f"{name}-kube-api-netpol", policy_name="allow-kube-api", namespace=system_ns, opts=child,
                       spec=allow_spec(select(), egress_rules=[to_kube_api()]))
        routed = [namespace_peer(namespace) for namespace in INGRESS_NAMESPACES]
        network_policy(f"{name}-gateway-netpol", policy_name=GATEWAY_NAME, namespace=ingress_ns, opts=child,
                       spec=allow_spec(select(GATEWAY_POD_LABELS),
                                       ingress_rules=[from_anywhere(*GATEWAY_SERVICE_PORTS)],
                                       egress_rules=[to_istiod(SYSTEM_NAMESPACE),
                                                     egress(routed, tcp(*CLIENT_PORTS))]))

    def _authorization(self, name: str, namespace: str, scrape_principals: Sequence[str],
                       opts: pulumi.ResourceOptions) -> None:
        def policy(suffix: str, spec: dict[str, Any]) -> None:
            k8s.apiextensions.CustomResource(
                f"{name}-{namespace}-{suffix}", api_version="security.istio.io/v1", kind="AuthorizationPolicy",
                metadata={"name": suffix, "namespace": namespace}, spec=spec, opts=opts,
            )

        # An empty spec matches every workload of the namespace and has no rule: deny all
        # (istio/api security/v1beta1/authorization.proto, "deny-all" example).
        policy("default-deny", {})
        if namespace in INGRESS_NAMESPACES:
            policy("allow-ingress-gateway", {
                "action": "ALLOW", "rules": [{"from": [{"source": {"principals": [GATEWAY_PRINCIPAL]}}]}],
            })
        if scrape_principals:
            policy("allow-metrics-scrape", {
                "action": "ALLOW",
                "rules": [{"from": [{"source": {"principals": sorted(scrape_principals)}}],
                           "to": [{"operation": {"methods": ["GET"], "paths": list(SCRAPE_PATHS)}}]}],
            })


def _load_balancer_annotations(scheme: str) -> dict[str, str]:
    # AWS Load Balancer Controller (docs/guide/service/annotations.md): "external" hands the Service
    # to the controller, which provisions an NLB; the scheme defaults to internal.
    return {
        "service.beta.kubernetes.io/aws-load-balancer-type": "external",
        "service.beta.kubernetes.io/aws-load-balancer-nlb-target-type": "ip",
        "service.beta.kubernetes.io/aws-load-balancer-scheme": scheme,
    }
