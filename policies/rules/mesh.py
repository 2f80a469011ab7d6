"""Istio: mutual TLS is STRICT mesh-wide, and nothing relaxes it.

A PeerAuthentication in the root namespace without a selector sets the mesh-wide mode; with
no mode, Istio falls back to PERMISSIVE (https://istio.io/latest/docs/reference/config/security/peer_authentication/).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    PolicyResource,
    ReportViolation,
    StackValidationArgs,
    StackValidationPolicy,
)

from policies.kube import api_group, describe, kind_of, metadata
from policies.wire import setting

HELM_TYPES: Final = frozenset({"kubernetes:helm.sh/v3:Release", "kubernetes:helm.sh/v4:Chart"})
RELAXED: Final = frozenset({"PERMISSIVE", "DISABLE"})

_SCHEMA = PolicyConfigSchema(properties={
    "rootNamespace": {
        "type": "string", "default": "istio-system",
        "description": "Istio's root namespace (meshConfig.rootNamespace), where the mesh-wide policy lives.",
    },
})


def chart_name(props: Mapping[str, Any]) -> str:
    """A Helm release's chart name without repository or OCI prefix."""
    return str(props.get("chart") or "").rstrip("/").rsplit("/", 1)[-1]


def _is_peer_authentication(resource: PolicyResource) -> bool:
    return kind_of(resource.props) == "PeerAuthentication" and api_group(resource.props) == "security.istio.io"


def _installs_istio(resource: PolicyResource) -> bool:
    if resource.resource_type in HELM_TYPES:
        return chart_name(resource.props) == "istiod"
    return api_group(resource.props) == "install.istio.io"


def _mode(spec: Mapping[str, Any]) -> str:
    return str((spec.get("mtls") or {}).get("mode") or "UNSET")


def _is_mesh_wide(resource: PolicyResource, root: str) -> bool:
    spec = resource.props.get("spec") or {}
    return metadata(resource.props).get("namespace") == root and not spec.get("selector")


def _validate(args: StackValidationArgs, report: ReportViolation) -> None:
    root = setting(args, _SCHEMA, "rootNamespace")
    mesh_wide_strict = False
    for resource in filter(_is_peer_authentication, args.resources):
        spec = resource.props.get("spec") or {}
        mode, mesh_wide = _mode(spec), _is_mesh_wide(resource, root)
        where = describe(resource.props, resource.name)
        if mode in RELAXED or (mesh_wide and mode == "UNSET"):
            report(f"{where} sets mTLS {mode}{' (PERMISSIVE mesh-wide)' if mode == 'UNSET' else ''}, so plain-text "
                   f"traffic is accepted. Fix: set spec.mtls.mode: STRICT.", resource.urn)
        relaxed_ports = [port for port, setting_ in (spec.get("portLevelMtls") or {}).items()
                         if str((setting_ or {}).get("mode")) in RELAXED]
        if relaxed_ports:
            report(f"{where} relaxes mTLS on ports {relaxed_ports}. Fix: remove portLevelMtls or set STRICT; expose "
                   f"plain-text ports through the ingress gateway instead.", resource.urn)
        mesh_wide_strict = mesh_wide_strict or (mesh_wide and mode == "STRICT")
    installer = next(filter(_installs_istio, args.resources), None)
    if installer is not None and not mesh_wide_strict:
        report(f"Istio is installed ({installer.name}) but no PeerAuthentication in {root} without a selector sets "
               f"mTLS STRICT, so the mesh defaults to PERMISSIVE. Fix: add a mesh-wide PeerAuthentication "
               f"'default' in {root} with spec.mtls.mode: STRICT.", installer.urn)


ISTIO_MTLS_STRICT = StackValidationPolicy(
    name="istio-mtls-strict",
    description="Where Istio is installed, a mesh-wide PeerAuthentication enforces STRICT mTLS and none relaxes it.",
    validate=_validate, enforcement_level=EnforcementLevel.MANDATORY, config_schema=_SCHEMA,
    url="https://istio.io/latest/docs/tasks/security/authentication/mtls-migration/",
)

POLICIES: Final = (ISTIO_MTLS_STRICT,)
"""The mesh rules."""
