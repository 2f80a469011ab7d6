"""Kubernetes workload security: every pod template (Deployments, Jobs, JobSets, training runtimes, any CRD with one).

A Kubeflow Trainer v2 TrainJob has no pod template: its pods are its runtime's (a ClusterTrainingRuntime's pod
templates, checked like any), overridden by what the TrainJob sets. So a TrainJob is judged on those overrides:
`spec.trainer` (its image must be pinned; a resource its resourcesPerNode requests must be limited there too) and
the pod patches of `spec.runtimePatches`, for what they set (a privileged or root security context, a hostPath
volume), since what a patch leaves out keeps the runtime's checked value.

Node agents (device plugin, DCGM, CNI, log and node exporters) need privileges, root and host paths.
The privilege rules skip a DaemonSet only when the `systemDaemonSets` allowlist names its namespace
and name and, for an agent installed from a chart, the chart in its `helm.sh/chart` label
(`<chart>-<version>`, the label every chart below sets). A look-alike in another namespace, or one
not rendered by that chart, is judged like any pod. A Helm release of a listed chart outside the
listed namespace is reported too (by k8s-no-host-access: every listed agent mounts host paths), as it
would run that agent's pods there; the rules never see the pods inside a release.

The default entries are the agents the stacks install; their DaemonSet names follow each chart's
`fullname` (the release name when it contains the chart name):
- NVIDIA/k8s-device-plugin deployments/helm/nvidia-device-plugin/templates/daemonset-device-plugin.yml
  and _helpers.tpl (`nvidia-device-plugin` and `-mps-control-daemon`, plus `-gpu-feature-discovery` when on);
- NVIDIA/dcgm-exporter deployment/templates/_helpers.tpl (`dcgm-exporter`);
- fluent/helm-charts charts/fluent-bit/templates/_helpers.tpl (`fluent-bit`);
- istio/istio manifests/charts/istio-cni/templates/daemonset.yaml (`istio-cni-node`, chart `cni`; its
  `istio.labels` helper sets helm.sh/chart the same way);
- prometheus-community/helm-charts charts/prometheus-node-exporter/templates/_helpers.tpl (the
  kube-prometheus-stack subchart: `<release>-prometheus-node-exporter`).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Final

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
)

from policies.kube import (
    GPU_RESOURCE,
    containers,
    describe,
    helm_value_images,
    image_is_pinned,
    kind_of,
    labels,
    metadata,
    pod_spec_patches,
    pod_specs,
    trainjob_trainer,
)
from policies.rules.mesh import HELM_TYPES, chart_name
from policies.wire import as_list, quantity, setting

HELM_CHART_LABEL: Final = "helm.sh/chart"
"""The label Helm charts set to `<chart>-<version>` on what they render."""
SYSTEM_DAEMONSETS_SCHEMA: Final[dict[str, Any]] = {
    "type": "array",
    "items": {
        "type": "object", "required": ["namespace", "name"], "additionalProperties": False,
        "properties": {
            "namespace": {"type": "string", "minLength": 1, "description": "The DaemonSet's namespace (exact)."},
            "name": {"type": "string", "minLength": 1, "description": "The DaemonSet's name (a glob)."},
            "chart": {"type": "string", "minLength": 1,
                      "description": "The chart that renders it: its helm.sh/chart label must be <chart>-<version>, "
                                     "and releases of this chart are allowed only in this namespace."},
        },
    },
    "default": [
        {"namespace": "kube-system", "name": "nvidia-device-plugin*", "chart": "nvidia-device-plugin"},
        {"namespace": "kube-system", "name": "dcgm-exporter", "chart": "dcgm-exporter"},
        {"namespace": "logging", "name": "fluent-bit", "chart": "fluent-bit"},
        {"namespace": "istio-system", "name": "istio-cni-node", "chart": "cni"},
        {"namespace": "monitoring", "name": "*-prometheus-node-exporter", "chart": "prometheus-node-exporter"},
    ],
    "description": "Node-agent DaemonSets allowed privileges, root and host access, by namespace, name and chart.",
}
_SYSTEM_SCHEMA = PolicyConfigSchema(properties={"systemDaemonSets": SYSTEM_DAEMONSETS_SCHEMA})
_URL = "https://kubernetes.io/docs/concepts/security/pod-security-standards/"

PodCheck = Callable[[ResourceValidationArgs, str, Mapping[str, Any], ReportViolation], None]


def _pod_specs(args: ResourceValidationArgs) -> Iterator[tuple[str, Mapping[str, Any]]]:
    if not args.resource_type.startswith("kubernetes:") or not kind_of(args.props):
        return
    yield from pod_specs(args.props)


def _rendered_by(chart: str, object_labels: Mapping[str, Any]) -> bool:
    # Helm's chart label is `<chart>-<version>` ('+' → '_'); the version starts with a digit (or 'v').
    return re.match(rf"^{re.escape(chart)}-v?[0-9]", str(object_labels.get(HELM_CHART_LABEL) or "")) is not None


def _is_system_agent(args: ResourceValidationArgs) -> bool:
    if kind_of(args.props) != "DaemonSet":
        return False
    meta = metadata(args.props)
    namespace, name = str(meta.get("namespace") or "default"), str(meta.get("name") or args.name)
    return any(entry["namespace"] == namespace and fnmatch.fnmatchcase(name, entry["name"])
               and ("chart" not in entry or _rendered_by(entry["chart"], labels(args.props)))
               for entry in setting(args, _SYSTEM_SCHEMA, "systemDaemonSets"))


def _agent_release_elsewhere(args: ResourceValidationArgs, report: ReportViolation) -> None:
    """A Helm release of an allowlisted node-agent chart outside the namespaces listed for that chart."""
    if args.resource_type not in HELM_TYPES:
        return
    chart = chart_name(args.props)
    homes = sorted({e["namespace"] for e in setting(args, _SYSTEM_SCHEMA, "systemDaemonSets") if e.get("chart") == chart})
    namespace = str(args.props.get("namespace") or "default")
    if homes and namespace not in homes:
        report(f"Helm release '{args.name}' installs node-agent chart {chart!r} in namespace {namespace!r}; its "
               f"DaemonSet mounts host paths (and runs privileged or as root), which systemDaemonSets allows only in "
               f"{homes}. Fix: install it in {' or '.join(homes)}, or add a reviewed systemDaemonSets entry "
               f"{{namespace, name, chart}} for it.", args.urn)


Validate = Callable[[ResourceValidationArgs, ReportViolation], None]


def _pod_rule(check: PodCheck, *, skip_system_agents: bool, also: Validate | None = None,
              patch: PodCheck | None = None) -> Validate:
    def validate(args: ResourceValidationArgs, report: ReportViolation) -> None:
        if also is not None:
            also(args, report)
        if skip_system_agents and _is_system_agent(args):
            return
        for path, spec in _pod_specs(args):
            check(args, path, spec, report)
        if patch is not None and args.resource_type.startswith("kubernetes:"):
            for path, spec in pod_spec_patches(args.props):
                patch(args, path, spec, report)
    return validate


ALLOWED_CAPABILITIES: Final = frozenset({"NET_BIND_SERVICE"})
"""The one capability Pod Security Standards' Restricted profile lets a container add (kubernetes.io/docs/concepts/
security/pod-security-standards/, "Capabilities (v1.22+)")."""


def _escalations(context: Mapping[str, Any], pod: Mapping[str, Any], *, patch: bool) -> list[str]:
    """What a container securityContext (over its pod's) grants beyond the Restricted profile.

    A pod reads an unset allowPrivilegeEscalation as true (the kernel's no_new_privs stays off); a TrainJob patch
    is read for what it sets (the runtime's value stays otherwise).
    """
    found = []
    if context.get("privileged") is True:
        found.append("privileged: true")
    # CRI runtimes take names with or without the CAP_ prefix, in any case.
    added = {str(c).upper().removeprefix("CAP_") for c in as_list((context.get("capabilities") or {}).get("add"))}
    if added - ALLOWED_CAPABILITIES:
        found.append(f"capabilities.add {sorted(added - ALLOWED_CAPABILITIES)}")
    escalation = context.get("allowPrivilegeEscalation")
    if escalation is True or (escalation is None and not patch):
        found.append(f"allowPrivilegeEscalation: {'true' if escalation else 'unset (true)'}")
    if context.get("procMount") not in (None, "Default"):
        found.append(f"procMount: {context.get('procMount')}")
    seccomp = (context.get("seccompProfile") or pod.get("seccompProfile") or {}).get("type")
    if seccomp == "Unconfined":
        found.append("seccompProfile: Unconfined")
    return found


def _privileged(args: ResourceValidationArgs, path: str, spec: Mapping[str, Any], report: ReportViolation,
                *, patch: bool = False) -> None:
    pod = spec.get("securityContext") or {}
    for field, container in containers(spec):
        found = _escalations(container.get("securityContext") or {}, pod, patch=patch)
        if found:
            report(f"{describe(args.props, args.name)} {path}.{field} runs with {'; '.join(found)}, a path to root on "
                   f"the node. Fix: set securityContext privileged: false, allowPrivilegeEscalation: false, "
                   f"capabilities.drop ['ALL'] (add at most NET_BIND_SERVICE) and no Unconfined seccomp or Unmasked "
                   f"procMount (container_security_context() in infra/k8s/podspec.py).", args.urn)


def _privileged_patch(args: ResourceValidationArgs, path: str, spec: Mapping[str, Any], report: ReportViolation) -> None:
    _privileged(args, path, spec, report, patch=True)


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


def _root_patch(args: ResourceValidationArgs, path: str, spec: Mapping[str, Any], report: ReportViolation) -> None:
    """A TrainJob pod patch that switches the runtime's pods to root (unset fields keep the runtime's non-root)."""
    contexts = [("securityContext", spec.get("securityContext") or {}),
                *((f"{field}.securityContext", c.get("securityContext") or {}) for field, c in containers(spec))]
    for where, context in contexts:
        if context.get("runAsNonRoot") is False or quantity(context.get("runAsUser")) == 0:
            got = "runAsUser: 0" if quantity(context.get("runAsUser")) == 0 else "runAsNonRoot: false"
            report(f"{describe(args.props, args.name)} {path}.{where} patches the runtime's pods to run as root "
                   f"({got}). Fix: drop it from the patch (the runtime's securityContext runs them non-root).", args.urn)


def _host_access(args: ResourceValidationArgs, path: str, spec: Mapping[str, Any], report: ReportViolation) -> None:
    shared = [key for key in ("hostNetwork", "hostPID", "hostIPC") if spec.get(key) is True]
    host_paths = [str(v.get("name")) for v in as_list(spec.get("volumes")) if isinstance(v, Mapping) and "hostPath" in v]
    # A hostPort binds the node's own address: the pod is reachable around its Service and NetworkPolicies.
    host_ports = [f"{field} hostPort {port.get('hostPort')}" for field, container in containers(spec)
                  for port in as_list(container.get("ports")) if isinstance(port, Mapping) and port.get("hostPort")]
    if shared or host_paths or host_ports:
        found = ", ".join([*(f"{key}: true" for key in shared), *(f"hostPath volume {name!r}" for name in host_paths),
                           *host_ports])
        report(f"{describe(args.props, args.name)} {path} uses the node's {found}. Fix: remove it (use emptyDir, a "
               f"PVC or a Service); node agents belong in a DaemonSet listed in systemDaemonSets.", args.urn)


def _host_path_volume(args: ResourceValidationArgs, report: ReportViolation) -> None:
    """A hostPath PersistentVolume: any pod whose claim binds it mounts the node's files, with no hostPath in sight."""
    if args.resource_type.startswith("kubernetes:") and kind_of(args.props) == "PersistentVolume":
        host_path = (args.props.get("spec") or {}).get("hostPath")
        if isinstance(host_path, Mapping):
            report(f"{describe(args.props, args.name)} is a hostPath volume ({host_path.get('path')!r}): a pod that "
                   f"claims it reads and writes the node's files. Fix: use a CSI volume (EBS, EFS) or emptyDir.",
                   args.urn)


def _host_access_outside_pods(args: ResourceValidationArgs, report: ReportViolation) -> None:
    _agent_release_elsewhere(args, report)
    _host_path_volume(args, report)


def _unlimited(resources: Mapping[str, Any], required: Iterable[str]) -> list[str]:
    """The `limits.<key>` a ResourceRequirements lacks: each of `required`, and a GPU limit equal to its request."""
    limits, requests = resources.get("limits") or {}, resources.get("requests") or {}
    missing = [f"limits.{key}" for key in required if limits.get(key) in (None, "")]
    gpu_requested = quantity(requests.get(GPU_RESOURCE))
    if gpu_requested and quantity(limits.get(GPU_RESOURCE)) != gpu_requested:
        missing.append(f"limits.{GPU_RESOURCE} (must equal its request)")
    return missing


def _limits(args: ResourceValidationArgs, path: str, spec: Mapping[str, Any], report: ReportViolation) -> None:
    for field, container in containers(spec):
        if field.startswith("ephemeralContainers"):
            continue  # the API forbids resources on ephemeral containers
        resources = container.get("resources") or {}
        missing = _unlimited(resources, ("cpu", "memory"))
        if missing:
            report(f"{describe(args.props, args.name)} {path}.{field} sets no {', '.join(missing)}. "
                   f"Fix: set resources.limits for cpu and memory (Resources(...).manifest() sets limits = requests)"
                   f"{_RUNTIME_NOTE if kind_of(args.props) in RUNTIME_KINDS else ''}.", args.urn)


RUNTIME_KINDS: Final = frozenset({"ClusterTrainingRuntime", "TrainingRuntime"})
"""Kubeflow Trainer v2 runtimes: pod templates that every TrainJob referencing them runs."""
_RUNTIME_NOTE: Final = ("; a TrainJob's resourcesPerNode merges over them key by key, so they are what every TrainJob "
                        "that sets none runs with, outside Kueue's quotas when it requests nothing")


def _trainer_resources(args: ResourceValidationArgs, report: ReportViolation) -> None:
    """A TrainJob's resourcesPerNode: each resource it requests is limited there too (GPUs: equal to the request).

    The controller merges resourcesPerNode key by key over the runtime container's resources, so a request without
    its limit meets a limit sized for no particular job (a request above it makes the pods invalid).
    """
    if not args.resource_type.startswith("kubernetes:"):
        return
    resources = trainjob_trainer(args.props).get("resourcesPerNode")
    if not isinstance(resources, Mapping):
        return
    requests = resources.get("requests") or {}
    missing = _unlimited(resources, [key for key in requests if key != GPU_RESOURCE])
    if missing:
        report(f"{describe(args.props, args.name)} spec.trainer.resourcesPerNode requests {sorted(requests)} but sets "
               f"no {', '.join(missing)}, so its pods get the runtime's limits, sized for no particular job. Fix: "
               f"set a limit for each resource it requests (container_resources() sets limits = requests).", args.urn)


_IMAGE_SCHEMA = PolicyConfigSchema(properties={
    "requireDigest": {
        "type": "boolean", "default": False,
        "description": "Require an @sha256 digest, not just a tag.",
    },
})


def _unpinned(args: ResourceValidationArgs, where: str, image: str, report: ReportViolation) -> None:
    """The one pinning check, for container images and the images Helm values choose alike."""
    digest = setting(args, _IMAGE_SCHEMA, "requireDigest")
    if not image_is_pinned(image) or (digest and "@sha256:" not in image):
        wanted = "a digest (@sha256:...)" if digest else "a version tag or a digest"
        report(f"{where} uses image {image or '(none)'!r}, which is not pinned to {wanted}; nodes may run different "
               f"code after a push. Fix: pin it (image versions live in infra/versions.py).", args.urn)


def _images(args: ResourceValidationArgs, path: str, spec: Mapping[str, Any], report: ReportViolation) -> None:
    for field, container in containers(spec):
        _unpinned(args, f"{describe(args.props, args.name)} {path}.{field}", str(container.get("image") or ""), report)


def _helm_images(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type in HELM_TYPES:
        for path, image in helm_value_images(args.props.get("values")):
            _unpinned(args, f"Helm release '{args.name}' {path}", image, report)


def _other_images(args: ResourceValidationArgs, report: ReportViolation) -> None:
    """Images outside pod templates: Helm values, and a TrainJob's trainer image (it replaces the runtime's)."""
    _helm_images(args, report)
    trainer = trainjob_trainer(args.props) if args.resource_type.startswith("kubernetes:") else {}
    if "image" in trainer:
        _unpinned(args, f"{describe(args.props, args.name)} spec.trainer.image", str(trainer.get("image") or ""), report)


def _rule(name: str, description: str, check: PodCheck, *, system_agents_exempt: bool,
          schema: PolicyConfigSchema | None = None, also: Validate | None = None,
          patch: PodCheck | None = None) -> ResourceValidationPolicy:
    return ResourceValidationPolicy(
        name=name, description=description,
        validate=_pod_rule(check, skip_system_agents=system_agents_exempt, also=also, patch=patch),
        enforcement_level=EnforcementLevel.MANDATORY, config_schema=schema, url=_URL,
    )


# A patch's container securityContext and volumes are judged like a pod's: both rules report only what is set.
K8S_NO_PRIVILEGED = _rule("k8s-no-privileged",
                          "Containers are not privileged, cannot escalate privileges, add no capability but "
                          "NET_BIND_SERVICE, and keep seccomp and /proc masking on.",
                          _privileged, system_agents_exempt=True, schema=_SYSTEM_SCHEMA, patch=_privileged_patch)
K8S_RUN_AS_NON_ROOT = _rule("k8s-run-as-non-root", "Containers run as non-root (runAsNonRoot: true, runAsUser != 0).",
                            _non_root, system_agents_exempt=True, schema=_SYSTEM_SCHEMA, patch=_root_patch)
K8S_NO_HOST_ACCESS = _rule("k8s-no-host-access",
                           "Pods use no hostNetwork, hostPID, hostIPC, hostPath or hostPort outside allowlisted system "
                           "DaemonSets (by namespace, name and chart), and no PersistentVolume is a hostPath.",
                           _host_access, system_agents_exempt=True, schema=_SYSTEM_SCHEMA, also=_host_access_outside_pods,
                           patch=_host_access)
K8S_RESOURCE_LIMITS = _rule("k8s-resource-limits", "Every container sets CPU and memory limits (and GPU limits = requests); "
                            "a TrainJob limits what its resourcesPerNode requests.",
                            _limits, system_agents_exempt=False, also=_trainer_resources)
K8S_IMAGE_PINNED = _rule("k8s-image-pinned",
                         "Every container image, TrainJob trainer image and image a Helm release's values choose is "
                         "pinned to a tag or digest, never latest or untagged.",
                         _images, system_agents_exempt=False, schema=_IMAGE_SCHEMA, also=_other_images)

POLICIES: Final = (K8S_NO_PRIVILEGED, K8S_RUN_AS_NON_ROOT, K8S_NO_HOST_ACCESS, K8S_RESOURCE_LIMITS, K8S_IMAGE_PINNED)
"""The Kubernetes workload security rules."""
