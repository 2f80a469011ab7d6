"""`Mesh`: Istio at one pinned version, mesh-wide STRICT mTLS and default-deny authorization.

Four Helm charts from Istio's repository, all at `MeshArgs.version` (a chart-version mismatch is
not representable): `base` (CRDs), `cni`, `istiod` and `gateway`. The CNI node agent sets up the
traffic redirection instead of the `istio-init` container, which needs NET_ADMIN and NET_RAW and
so would be rejected by the `restricted` Pod Security level of our workload namespaces
(https://istio.io/latest/docs/setup/additional-setup/pod-security-admission/).

Authorization, per workload namespace: an empty-spec `AuthorizationPolicy` denies every request,
then ALLOW policies admit the ingress gateway's and Prometheus's mTLS principals. Prometheus is
not meshed itself: it runs an Istio sidecar only to receive a workload certificate, which it
presents when scraping (see infra/observability.py), so the ALLOW is by principal, not by IP.

Injection is data: `MeshArgs.injection` maps namespace → sidecar on/off, and
`MeshArgs.namespace_labels()` turns it into the `istio-injection` labels the program puts on the
`Namespaces` it creates, so the mesh and the namespaces share one source of truth.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import pulumi
import pulumi_kubernetes as k8s

from infra import versions
from infra.config.errors import raise_if_invalid
from infra.k8s.namespaces import Namespaces, NamespacesArgs

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
DEFAULT_INJECTION: Final[Mapping[str, bool]] = {"inference": True, "training": False}
"""Serving pods get a sidecar; training pods never do (NCCL/gloo collectives must not pass through Envoy)."""
DEFAULT_SCRAPE_PATHS: Final = ("/metrics", "/monitoring/prometheus/metrics")
"""Metrics paths of our server and of TF Serving (its monitoring config path, see infra/inference.py)."""
_PRINCIPAL = re.compile(r"^[a-z0-9.-]+/ns/[a-z0-9-]+/sa/[a-z0-9.-]+$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")

GatewayScheme = Literal["internal", "internet-facing"]


def principal(namespace: str, service_account: str) -> str:
    """The mTLS principal (SPIFFE identity without `spiffe://`) of a service account."""
    return f"{TRUST_DOMAIN}/ns/{namespace}/sa/{service_account}"


@dataclass(frozen=True, kw_only=True)
class MeshArgs:
    """Inputs of `Mesh`."""

    version: str = versions.ISTIO_VERSION
    """Istio version of every chart (base, cni, istiod, gateway). Defaults to the pin. Valid values: versions.ISTIO_VERSIONS."""
    injection: Mapping[str, bool] = field(default_factory=lambda: dict(DEFAULT_INJECTION))
    """Workload namespace → sidecar injection on/off. Defaults to inference on, training off."""
    ingress_namespaces: Sequence[str] = ("inference",)
    """Workload namespaces the ingress gateway may call. Must have injection on. Defaults to inference."""
    scrape_principals: Sequence[str] = ()
    """mTLS principals allowed to GET the metrics paths in every workload namespace (Prometheus). Defaults to none."""
    scrape_paths: Sequence[str] = DEFAULT_SCRAPE_PATHS
    """HTTP paths the scrape principals may GET. Defaults to /metrics and TF Serving's metrics path."""
    gateway_scheme: GatewayScheme = "internal"
    """NLB scheme of the gateway Service. Defaults to internal. Valid values: internal, internet-facing."""
    aws_load_balancer: bool = True
    """Annotate the gateway Service for the AWS Load Balancer Controller (NLB, IP targets). Defaults to true.
    False leaves a plain LoadBalancer Service (kind, minikube)."""
    replicas: int = 2
    """Minimum replicas of istiod and of the gateway (2 keeps them up through node drains). Defaults to 2. Valid: 1 to 10."""

    @property
    def gateway_principal(self) -> str:
        """The ingress gateway's mTLS principal."""
        return principal(INGRESS_NAMESPACE, GATEWAY_NAME)

    def namespace_labels(self) -> dict[str, dict[str, str]]:
        """The injection label of each workload namespace (for `NamespacesArgs.labels`)."""
        return {ns: {INJECTION_LABEL: "enabled" if on else "disabled"} for ns, on in sorted(self.injection.items())}


class Mesh(pulumi.ComponentResource):
    """Istio base, CNI, istiod and ingress gateway; STRICT mTLS; default-deny authorization with explicit allows."""

    gateway: str
    """The ingress `Gateway` as `namespace/name`, for VirtualServices."""
    gateway_principal: str
    """The ingress gateway's mTLS principal."""
    control_plane: pulumi.Resource
    """The istiod release: depend on it before creating meshed workloads (injection needs its webhook)."""

    def __init__(self, name: str, args: MeshArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("modelplane:mesh:Mesh", name, None, opts)
        _validate(args)
        child = pulumi.ResourceOptions(parent=self)
        # istio-system runs the CNI DaemonSet (hostPath): privileged, as Istio's PSA guide says.
        # The gateway needs only the net.ipv4.ip_unprivileged_port_start sysctl, which baseline allows.
        namespaces = Namespaces(f"{name}-namespaces", NamespacesArgs(
            namespaces={SYSTEM_NAMESPACE: "privileged", INGRESS_NAMESPACE: "baseline"}), opts=child)
        system_ns, ingress_ns = namespaces.names[SYSTEM_NAMESPACE], namespaces.names[INGRESS_NAMESPACE]

        base = self._release(name, "base", "istio-base", system_ns, args, {
            # `defaultRevision` creates the default validating webhook for Istio config.
            "defaultRevision": "default",
        }, [])
        cni = self._release(name, "cni", "istio-cni", system_ns, args, {}, [base])
        istiod = self._release(name, "istiod", "istiod", system_ns, args, {
            # Injected pods then skip istio-init (NET_ADMIN/NET_RAW) and meet `restricted`. The cni chart
            # goes after base and before istiod (manifests/charts/install-OpenShift.md at 1.29.6).
            "pilot": {"cni": {"enabled": True}},
            "autoscaleMin": args.replicas,
            "meshConfig": {"trustDomain": TRUST_DOMAIN},
        }, [base, cni])
        gateway = self._release(name, "gateway", GATEWAY_NAME, ingress_ns, args, {
            "service": {"type": "LoadBalancer", "annotations": _load_balancer_annotations(args)},
            "autoscaling": {"minReplicas": args.replicas},
        }, [istiod])
        self.control_plane = istiod
        self.gateway = f"{INGRESS_NAMESPACE}/{GATEWAY_NAME}"
        self.gateway_principal = args.gateway_principal

        after_istiod = pulumi.ResourceOptions(parent=self, depends_on=[istiod])
        k8s.apiextensions.CustomResource(
            f"{name}-gateway-http", api_version="networking.istio.io/v1", kind="Gateway",
            metadata={"name": GATEWAY_NAME, "namespace": INGRESS_NAMESPACE},
            spec={
                # The chart labels its pods istio=<release name without "istio-">.
                "selector": {"istio": GATEWAY_NAME.removeprefix("istio-")},
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
        for namespace in sorted(args.injection):
            self._authorization(name, namespace, args, after_istiod)
        self.register_outputs({"gateway": self.gateway, "gateway_principal": self.gateway_principal})

    def _release(self, name: str, chart: str, release: str, namespace: pulumi.Input[str], args: MeshArgs,
                 values: Mapping[str, Any], depends_on: Sequence[pulumi.Resource]) -> k8s.helm.v3.Release:
        # `name` is the Helm release name; set explicitly so Pulumi adds no random suffix (the
        # gateway's ServiceAccount, hence its principal, is named after the release).
        return k8s.helm.v3.Release(
            f"{name}-{chart}", name=release, chart=chart, version=args.version,
            repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=versions.ISTIO_REPO), namespace=namespace,
            values=dict(values), opts=pulumi.ResourceOptions(parent=self, depends_on=list(depends_on)),
        )

    def _authorization(self, name: str, namespace: str, args: MeshArgs, opts: pulumi.ResourceOptions) -> None:
        def policy(suffix: str, spec: dict[str, Any]) -> None:
            k8s.apiextensions.CustomResource(
                f"{name}-{namespace}-{suffix}", api_version="security.istio.io/v1", kind="AuthorizationPolicy",
                metadata={"name": suffix, "namespace": namespace}, spec=spec, opts=opts,
            )

        # An empty spec matches every workload of the namespace and has no rule: deny all
        # (istio/api security/v1beta1/authorization.proto, "deny-all" example).
        policy("default-deny", {})
        if namespace in args.ingress_namespaces:
            policy("allow-ingress-gateway", {
                "action": "ALLOW", "rules": [{"from": [{"source": {"principals": [args.gateway_principal]}}]}],
            })
        if args.scrape_principals:
            policy("allow-metrics-scrape", {
                "action": "ALLOW",
                "rules": [{"from": [{"source": {"principals": sorted(args.scrape_principals)}}],
                           "to": [{"operation": {"methods": ["GET"], "paths": list(args.scrape_paths)}}]}],
            })


def _load_balancer_annotations(args: MeshArgs) -> dict[str, str]:
    if not args.aws_load_balancer:
        return {}
    # AWS Load Balancer Controller (docs/guide/service/annotations.md): "external" hands the Service
    # to the controller, which provisions an NLB; the scheme defaults to internal.
    return {
        "service.beta.kubernetes.io/aws-load-balancer-type": "external",
        "service.beta.kubernetes.io/aws-load-balancer-nlb-target-type": "ip",
        "service.beta.kubernetes.io/aws-load-balancer-scheme": args.gateway_scheme,
    }


def _validate(args: MeshArgs) -> None:
    problems: list[tuple[str, str]] = []
    if args.version not in versions.ISTIO_VERSIONS:
        problems.append(("version", f"must be one of {', '.join(versions.ISTIO_VERSIONS)} (got {args.version!r})"))
    if args.gateway_scheme not in ("internal", "internet-facing"):
        problems.append(("gateway_scheme", f"must be internal or internet-facing (got {args.gateway_scheme!r})"))
    if not 1 <= args.replicas <= 10:
        problems.append(("replicas", f"must be 1 to 10 (got {args.replicas})"))
    for namespace in args.injection:
        if not _DNS_LABEL.match(namespace) or namespace in (SYSTEM_NAMESPACE, INGRESS_NAMESPACE):
            problems.append(("injection", f"{namespace!r} must be a workload namespace name (not the mesh's own)"))
    for namespace in args.ingress_namespaces:
        if not args.injection.get(namespace, False):
            problems.append(("ingress_namespaces",
                             f"{namespace!r} must be a namespace with injection on; the gateway reaches only "
                             "meshed workloads over mTLS"))
    for item in args.scrape_principals:
        if not _PRINCIPAL.match(item):
            problems.append(("scrape_principals", f"must look like {TRUST_DOMAIN}/ns/NAMESPACE/sa/NAME (got {item!r})"))
    if args.scrape_principals and not args.scrape_paths:
        problems.append(("scrape_paths", "must list at least one path when scrape_principals is set"))
    raise_if_invalid("Mesh", problems)
