"""Kubernetes workload security: every pod template (Deployments, Jobs, Kubeflow jobs, any CRD with one).

Node agents (device plugins, DCGM, CNI) need privileges, root and host paths; they are
DaemonSets named in the `systemDaemonSets` allowlist, which the privilege rules skip.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Final

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
)

from policies.kube import GPU_RESOURCE, containers, describe, image_is_pinned, kind_of, pod_specs, qualified_name
from policies.wire import as_list, quantity, setting

SYSTEM_DAEMONSETS_SCHEMA: Final[dict[str, Any]] = {
    "type": "array", "items": {"type": "string"},
    "default": ["kube-system/*", "*/nvidia-device-plugin*", "*/dcgm-exporter*", "istio-system/istio-cni-node"],
    "description": "namespace/name glob patterns of node-agent DaemonSets allowed privileges, root and host access.",
}
_SYSTEM_SCHEMA = PolicyConfigSchema(properties={"systemDaemonSets": SYSTEM_DAEMONSETS_SCHEMA})
_URL = "https://kubernetes.io/docs/concepts/security/pod-security-standards/"

PodCheck = Callable[[ResourceValidationArgs, str, Mapping[str, Any], ReportViolation], None]


def _pod_specs(args: ResourceValidationArgs) -> Iterator[tuple[str, Mapping[str, Any]]]:
    if not args.resource_type.startswith("kubernetes:") or not kind_of(args.props):
        return
    yield from pod_specs(args.props)


def _is_system_agent(args: ResourceValidationArgs) -> bool:
    if kind_of(args.props) != "DaemonSet":
        return False
    name = qualified_name(args.props, args.name)
    return any(fnmatch.fnmatch(name, pattern) for pattern in setting(args, _SYSTEM_SCHEMA, "systemDaemonSets"))


def _pod_rule(check: PodCheck, *, skip_system_agents: bool) -> Callable[[ResourceValidationArgs, ReportViolation], None]:
    def validate(args: ResourceValidationArgs, report: ReportViolation) -> None:
        if skip_system_agents and _is_system_agent(args):
            return
        for path, spec in _pod_specs(args):
            check(args, path, spec, report)
    return validate


def _privileged(args: ResourceValidationArgs, path: str, spec: Mapping[str, Any], report: ReportViolation) -> None:
    for field, container in containers(spec):
        context = container.get("securityContext") or {}
        added = {str(c).upper() for c in as_list((context.get("capabilities") or {}).get("add"))}
        if context.get("privileged") is True or added & {"ALL", "SYS_ADMIN"}:
            what = "privileged: true" if context.get("privileged") is True else f"capabilities.add {sorted(added)}"
            report(f"{describe(args.props, args.name)} {path}.{field} runs with {what}, i.e. root on the node. "
                   f"Fix: remove it and drop all capabilities (container_security_context() in infra/k8s/podspec.py).", args.urn)


def _non_root(args: ResourceValidationArgs, path: str, spec: Mapping[str, Any], report: ReportViolation) -> None:
    pod = spec.get("securityContext") or {}
    for field, container in containers(spec):
        context = container.get("securityContext") or {}
        non_root = context.get("runAsNonRoot", pod.get("runAsNonRoot"))
        user = context.get("runAsUser", pod.get("runAsUser"))
        if non_root is not True or quantity(user) == 0:
            got = "runAsUser: 0" if quantity(user) == 0 else f"runAsNonRoot: {non_root if non_root is not None else 'unset'}"
            report(f"{describe(args.props, args.name)} {path}.{field} may run as root ({got}). Fix: set "
                   f"securityContext.runAsNonRoot: true and a non-zero runAsUser (pod_security_context()).", args.urn)


def _host_access(args: ResourceValidationArgs, path: str, spec: Mapping[str, Any], report: ReportViolation) -> None:
    shared = [key for key in ("hostNetwork", "hostPID", "hostIPC") if spec.get(key) is True]
    host_paths = [str(v.get("name")) for v in as_list(spec.get("volumes")) if isinstance(v, Mapping) and "hostPath" in v]
    if shared or host_paths:
        found = ", ".join([*(f"{key}: true" for key in shared), *(f"hostPath volume {name!r}" for name in host_paths)])
        report(f"{describe(args.props, args.name)} {path} uses the node's {found}. Fix: remove it (use emptyDir, a "
               f"PVC or a Service); node agents belong in a DaemonSet listed in systemDaemonSets.", args.urn)


def _limits(args: ResourceValidationArgs, path: str, spec: Mapping[str, Any], report: ReportViolation) -> None:
    for field, container in containers(spec):
        if field.startswith("ephemeralContainers"):
            continue  # the API forbids resources on ephemeral containers
        resources = container.get("resources") or {}
        limits, requests = resources.get("limits") or {}, resources.get("requests") or {}
        missing = [key for key in ("cpu", "memory") if limits.get(key) in (None, "")]
        gpu_requested = quantity(requests.get(GPU_RESOURCE))
        if gpu_requested and quantity(limits.get(GPU_RESOURCE)) != gpu_requested:
            missing.append(f"{GPU_RESOURCE} (must equal its request)")
        if missing:
            report(f"{describe(args.props, args.name)} {path}.{field} sets no limits.{', limits.'.join(missing)}. "
                   f"Fix: set resources.limits for cpu and memory (Resources(...).manifest() sets limits = requests).", args.urn)


_IMAGE_SCHEMA = PolicyConfigSchema(properties={
    "requireDigest": {
        "type": "boolean", "default": False,
        "description": "Require an @sha256 digest, not just a tag.",
    },
})


def _images(args: ResourceValidationArgs, path: str, spec: Mapping[str, Any], report: ReportViolation) -> None:
    digest = setting(args, _IMAGE_SCHEMA, "requireDigest")
    for field, container in containers(spec):
        image = str(container.get("image") or "")
        if not image_is_pinned(image) or (digest and "@sha256:" not in image):
            wanted = "a digest (@sha256:...)" if digest else "a version tag or a digest"
            report(f"{describe(args.props, args.name)} {path}.{field} uses image {image or '(none)'!r}, which is "
                   f"not pinned to {wanted}; nodes may run different code after a push. Fix: pin it (image versions "
                   f"live in infra/versions.py).", args.urn)


def _rule(name: str, description: str, check: PodCheck, *, system_agents_exempt: bool,
          schema: PolicyConfigSchema | None = None) -> ResourceValidationPolicy:
    return ResourceValidationPolicy(
        name=name, description=description, validate=_pod_rule(check, skip_system_agents=system_agents_exempt),
        enforcement_level=EnforcementLevel.MANDATORY, config_schema=schema, url=_URL,
    )


K8S_NO_PRIVILEGED = _rule("k8s-no-privileged", "Containers are not privileged and add no SYS_ADMIN/ALL capability.",
                          _privileged, system_agents_exempt=True, schema=_SYSTEM_SCHEMA)
K8S_RUN_AS_NON_ROOT = _rule("k8s-run-as-non-root", "Containers run as non-root (runAsNonRoot: true, runAsUser != 0).",
                            _non_root, system_agents_exempt=True, schema=_SYSTEM_SCHEMA)
K8S_NO_HOST_ACCESS = _rule("k8s-no-host-access",
                           "Pods use no hostNetwork, hostPID, hostIPC or hostPath outside allowlisted system DaemonSets.",
                           _host_access, system_agents_exempt=True, schema=_SYSTEM_SCHEMA)
K8S_RESOURCE_LIMITS = _rule("k8s-resource-limits", "Every container sets CPU and memory limits (and GPU limits = requests).",
                            _limits, system_agents_exempt=False)
K8S_IMAGE_PINNED = _rule("k8s-image-pinned", "Every container image is pinned to a tag or digest, never latest or untagged.",
                         _images, system_agents_exempt=False, schema=_IMAGE_SCHEMA)

POLICIES: Final = (K8S_NO_PRIVILEGED, K8S_RUN_AS_NON_ROOT, K8S_NO_HOST_ACCESS, K8S_RESOURCE_LIMITS, K8S_IMAGE_PINNED)
"""The Kubernetes workload security rules."""
