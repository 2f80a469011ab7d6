"""Readers for Kubernetes objects in the wire format: pod templates, containers and Karpenter NodePools.

Written against the upstream shapes (core/v1 PodSpec, JobSet `jobset.x-k8s.io/v1alpha2`, Kubeflow Trainer
`trainer.kubeflow.org/v1alpha1`, Karpenter `karpenter.sh/v1` NodePool), never against how modelplane happens to build
them, so the rules hold for any object a component may add later.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any, Final

from policies.wire import as_list, quantity

GPU_RESOURCE: Final = "nvidia.com/gpu"
"""The extended resource NVIDIA's device plugin advertises."""
CAPACITY_TYPE_KEY: Final = "karpenter.sh/capacity-type"
"""NodePool requirement key choosing spot and/or on-demand (Karpenter defaults to on-demand when absent)."""
GPU_REQUIREMENT_KEYS: Final = frozenset({
    "karpenter.k8s.aws/instance-gpu-count", "karpenter.k8s.aws/instance-gpu-name",
    "karpenter.k8s.aws/instance-gpu-manufacturer", "karpenter.k8s.aws/instance-gpu-memory",
})
"""Well-known Karpenter labels that only GPU instances carry."""
GPU_FAMILY: Final = re.compile(r"^(g|gr|p)[0-9]")
"""EC2 families with NVIDIA GPUs: g4dn, g5, g6, g6e, gr6, p3, p4d, p5, ..."""
CONTAINER_FIELDS: Final = ("initContainers", "containers", "ephemeralContainers")
"""PodSpec fields that hold containers."""


def kind_of(props: Mapping[str, Any]) -> str:
    """The object's `kind` ('' when it is not a Kubernetes object)."""
    kind = props.get("kind")
    return kind if isinstance(kind, str) else ""


def api_group(props: Mapping[str, Any]) -> str:
    """The API group of the object's apiVersion ('' for the core group)."""
    api_version = str(props.get("apiVersion") or "")
    return api_version.split("/", 1)[0] if "/" in api_version else ""


def metadata(props: Mapping[str, Any]) -> Mapping[str, Any]:
    """The object's metadata mapping (empty when absent)."""
    meta = props.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def qualified_name(props: Mapping[str, Any], fallback: str) -> str:
    """`namespace/name` of the object (the Pulumi resource name when metadata.name is unset)."""
    meta = metadata(props)
    name = meta.get("name") or fallback
    namespace = meta.get("namespace")
    return f"{namespace}/{name}" if namespace else str(name)


def describe(props: Mapping[str, Any], fallback: str) -> str:
    """`Kind namespace/name`, for messages."""
    return f"{kind_of(props) or 'object'} {qualified_name(props, fallback)}"


def labels(props: Mapping[str, Any]) -> Mapping[str, Any]:
    """The object's own labels."""
    found = metadata(props).get("labels")
    return found if isinstance(found, Mapping) else {}


def pod_specs(props: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """(path, PodSpec) for every pod template in the object: Pods, workloads, CronJobs, JobSets, training runtimes, any CRD.

    A PodSpec is any mapping under `spec`, reached through maps and lists, with a `containers` list, so
    `spec.template.spec`, `spec.jobTemplate.spec.template.spec`, a JobSet's
    `spec.replicatedJobs[node].template.spec.template.spec` and a (Cluster)TrainingRuntime's
    `spec.template.spec.replicatedJobs[node].template.spec.template.spec` are all found (list items are named by
    their `name`). A TrainJob has no pod template: its `spec.runtimePatches` hold PodSpec *patches*
    (`pod_spec_patches`), whose `containers` carry no image or resources, so they are never read as PodSpecs.
    """
    spec = props.get("spec")
    if not isinstance(spec, Mapping):
        return
    if is_trainjob(props):
        spec = {key: value for key, value in spec.items() if key != "runtimePatches"}
    yield from _find_pod_specs(spec, "spec")


def _find_pod_specs(node: Mapping[str, Any], path: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
    if isinstance(node.get("containers"), list):
        yield path, node
        return
    for key, value in node.items():
        if isinstance(value, Mapping):
            yield from _find_pod_specs(value, f"{path}.{key}")
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, Mapping):
                    yield from _find_pod_specs(item, f"{path}.{key}[{item.get('name') or i}]")


TRAINER_GROUP: Final = "trainer.kubeflow.org"
"""The API group of Kubeflow Trainer v2's TrainJob, TrainingRuntime and ClusterTrainingRuntime."""
JOBSET_GROUP: Final = "jobset.x-k8s.io"
"""The API group of JobSet (a TrainJob's runtime template, and the JobSet Trainer builds from it)."""


def is_trainjob(props: Mapping[str, Any]) -> bool:
    """Whether the object is a Kubeflow Trainer v2 TrainJob (any trainer.kubeflow.org version)."""
    return kind_of(props) == "TrainJob" and api_group(props) == TRAINER_GROUP


def trainjob_trainer(props: Mapping[str, Any]) -> Mapping[str, Any]:
    """A TrainJob's `spec.trainer` (empty for other objects, or when unset).

    It overrides the runtime's trainer container (kubeflow/trainer v2.3.0 pkg/apis/trainer/v1alpha1/trainjob_types.go
    `Trainer`: image, command, args, env, numNodes, resourcesPerNode merged key by key over the container's
    resources, numProcPerNode): the only container fields a TrainJob sets itself.
    """
    trainer = (props.get("spec") or {}).get("trainer") if is_trainjob(props) else None
    return trainer if isinstance(trainer, Mapping) else {}


def pod_spec_patches(props: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """(path, PodSpecPatch) for every pod patch of a TrainJob: `spec.runtimePatches[manager].trainingRuntimeSpec.
    template.spec.replicatedJobs[name].template.spec.template.spec`.

    kubeflow/trainer v2.3.0 trainjob_types.go `PodSpecPatch`: serviceAccountName, volumes, initContainers and
    containers (`ContainerPatch`: name, env, volumeMounts, securityContext; no image, no resources),
    imagePullSecrets, securityContext, nodeSelector, affinity, tolerations, schedulingGates,
    terminationGracePeriodSeconds. The controller strategic-merges each patch over the runtime's JobSet spec
    (pkg/runtime/core/trainingruntime.go mergeRuntimePatches), so a field a patch leaves out keeps the runtime's value:
    a rule reads a patch for what it sets, never for what it lacks.
    """
    if not is_trainjob(props):
        return
    for i, patch in enumerate(as_list((props.get("spec") or {}).get("runtimePatches"))):
        if not isinstance(patch, Mapping):
            continue
        base = f"spec.runtimePatches[{patch.get('manager') or i}].trainingRuntimeSpec.template.spec"
        jobset = _mapping(patch, "trainingRuntimeSpec", "template", "spec")
        for j, replicated in enumerate(as_list(jobset.get("replicatedJobs"))):
            if not isinstance(replicated, Mapping):
                continue
            pod = _mapping(replicated, "template", "spec", "template", "spec")
            if pod:
                yield f"{base}.replicatedJobs[{replicated.get('name') or j}].template.spec.template.spec", pod


def _mapping(node: Mapping[str, Any], *keys: str) -> Mapping[str, Any]:
    for key in keys:
        found = node.get(key)
        if not isinstance(found, Mapping):
            return {}
        node = found
    return node


def containers(pod_spec: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """(field, container) for every init, app and ephemeral container; field reads like `containers[server]`."""
    for field in CONTAINER_FIELDS:
        for i, container in enumerate(as_list(pod_spec.get(field))):
            if isinstance(container, Mapping):
                yield f"{field}[{container.get('name', i)}]", container


def image_is_pinned(image: str) -> bool:
    """True when an image reference carries a digest, or a tag other than `latest` (a registry port is no tag)."""
    if "@sha256:" in image:
        return True
    name, _, tag = image.rpartition(":")
    return bool(name) and "/" not in tag and tag not in ("", "latest")


IMAGE_DIGEST_KEYS: Final = ("digest", "sha")
"""Helm values keys holding an image digest (`digest` in most charts, `sha` in kube-prometheus-stack's)."""
IMAGE_TAG_KEYS: Final = ("tag", "imageTag")
"""Helm values keys holding a tag for the string images beside and below them (Istio's `tag`, Elastic's `imageTag`)."""
CHART_DEFAULT: Final = "(chart default)"
"""Stands for the part of an image reference a release leaves to its chart (pinned by the chart version)."""

_Tag = tuple[str, str]
"""(values path, tag) of one tag key in scope."""


def helm_value_images(values: Any, path: str = "values") -> Iterator[tuple[str, str]]:
    """(path, image reference) for every image a Helm release's values choose, and every bare unpinned tag.

    Charts spell images two ways. A map (`image: {registry, repository, tag, digest}`; kube-prometheus-stack's
    `sha`): one with none of repository, tag or digest (only `pullPolicy`, say) leaves the image to the chart
    and is skipped; a missing repository reads `(chart default)`, and a missing or empty tag reads
    `:(chart default)`, the chart's appVersion, pinned by the chart version. Or a string (`image: repo:tag`),
    whose tag may sit apart: Istio's charts build `{hub}/{image}:{tag | default global.tag}`
    (manifests/charts/istio-control/istio-discovery/values.yaml at 1.29.6: `image: pilot`, `tag: ""`,
    `global.tag`, `global.proxy.image: proxyv2`) and Elastic's `{image}:{imageTag}`. So a string image without
    its own tag takes the nearest non-empty `tag`/`imageTag` of its map or an enclosing one, `global.tag` last.
    A tag that no string image takes is judged on its own when it is `latest`, or empty with no tag to fall
    back to (`global: {tag: latest}` switches every Istio image to latest).
    """
    used: set[str] = set()
    root_scope = _own_tags(values.get("global"), f"{path}.global") if isinstance(values, Mapping) else []
    bare = {where: (tag, False) for where, tag in root_scope}
    yield from _walk(values, path, root_scope, used, bare)
    for where, (tag, falls_back) in bare.items():
        if where not in used and (tag == "latest" or (tag == "" and not falls_back)):
            yield where, f"{CHART_DEFAULT}:{tag}"


def _own_tags(node: Any, path: str) -> list[_Tag]:
    if not isinstance(node, Mapping):
        return []
    found = [(f"{path}.{key}", node[key]) for key in IMAGE_TAG_KEYS if key in node]
    return [(where, str(tag)) for where, tag in found if isinstance(tag, str | int | float) and not isinstance(tag, bool)]


def _walk(values: Any, path: str, scope: list[_Tag], used: set[str], bare: dict[str, tuple[str, bool]]
          ) -> Iterator[tuple[str, str]]:
    if isinstance(values, Mapping):
        own = _own_tags(values, path)
        for where, tag in own:
            bare.setdefault(where, (tag, any(t for _, t in scope)))
        # A map's own tags are the nearest for the images in it (global.proxy.image takes global.tag).
        scope = [tag for tag in scope if tag not in own] + own
        for key, value in values.items():
            where = f"{path}.{key}"
            if _is_image_key(str(key)):
                reference = _image_reference(value, scope, used)
                if reference is not None:
                    yield where, reference
                    continue
            yield from _walk(value, where, scope, used, bare)
    elif isinstance(values, list):
        for i, item in enumerate(values):
            yield from _walk(item, f"{path}[{i}]", scope, used, bare)


def _is_image_key(key: str) -> bool:
    return key == "image" or key.endswith("Image")


def _image_reference(value: Any, scope: list[_Tag], used: set[str]) -> str | None:
    if isinstance(value, str):
        if "@" in value or ":" in value.rsplit("/", 1)[-1]:
            return value
        # The nearest non-empty tag is this image's; the empty ones nearer than it deferred to it: none is bare.
        tag = ""
        for where, tag in reversed(scope):
            used.add(where)
            if tag:
                break
        return f"{value}:{tag}" if tag else value
    if not isinstance(value, Mapping):
        return None
    repository, tag = str(value.get("repository") or ""), str(value.get("tag") or "")
    digest = next((str(value[k]) for k in IMAGE_DIGEST_KEYS if value.get(k)), "")
    if not (repository or tag or digest):
        return None
    registry = str(value.get("registry") or "")
    reference = f"{registry}/{repository}" if registry and repository else repository or CHART_DEFAULT
    reference += f":{tag or CHART_DEFAULT}" if tag or not digest else ""
    if digest:
        reference += "@" + (digest if digest.startswith("sha256:") else f"sha256:{digest}")
    return reference


def pod_template_labels(props: Mapping[str, Any]) -> Mapping[str, Any]:
    """Labels of the object's pod template (`spec.template.metadata.labels`), for selector matching."""
    template = (props.get("spec") or {}).get("template") or {}
    found = (template.get("metadata") or {}).get("labels")
    return found if isinstance(found, Mapping) else {}


def selector_matches(selector: Mapping[str, Any] | None, pod_labels: Mapping[str, Any]) -> bool:
    """Whether a LabelSelector (matchLabels and matchExpressions) selects pods with these labels."""
    if not isinstance(selector, Mapping) or not (selector.get("matchLabels") or selector.get("matchExpressions")):
        return False
    match_labels = selector.get("matchLabels") or {}
    if any(pod_labels.get(key) != value for key, value in match_labels.items()):
        return False
    for expression in as_list(selector.get("matchExpressions")):
        key, operator = expression.get("key"), expression.get("operator")
        values = as_list(expression.get("values"))
        present = key in pod_labels
        if (operator == "In" and pod_labels.get(key) not in values) or (operator == "NotIn" and pod_labels.get(key) in values):
            return False
        if (operator == "Exists" and not present) or (operator == "DoesNotExist" and present):
            return False
    return True


def is_nodepool(props: Mapping[str, Any]) -> bool:
    """Whether the object is a Karpenter NodePool (any karpenter.sh version)."""
    return kind_of(props) == "NodePool" and api_group(props) == "karpenter.sh"


def is_ec2_nodeclass(props: Mapping[str, Any]) -> bool:
    """Whether the object is a Karpenter EC2NodeClass (any karpenter.k8s.aws version)."""
    return kind_of(props) == "EC2NodeClass" and api_group(props) == "karpenter.k8s.aws"


def nodepool_template_spec(props: Mapping[str, Any]) -> Mapping[str, Any]:
    """`spec.template.spec` of a NodePool (requirements, taints, nodeClassRef)."""
    template = (props.get("spec") or {}).get("template") or {}
    found = template.get("spec")
    return found if isinstance(found, Mapping) else {}


def requirements(props: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """A NodePool's scheduling requirements."""
    return [r for r in as_list(nodepool_template_spec(props).get("requirements")) if isinstance(r, Mapping)]


def requirement(props: Mapping[str, Any], key: str) -> Mapping[str, Any] | None:
    """The NodePool requirement on one label key, if any."""
    return next((r for r in requirements(props) if r.get("key") == key), None)


def _requirement_wants_gpus(req: Mapping[str, Any]) -> bool:
    key, operator = str(req.get("key")), req.get("operator")
    values = [str(v) for v in as_list(req.get("values"))]
    if operator not in ("In", "Gt", "Exists"):
        return False
    if key in GPU_REQUIREMENT_KEYS:
        return key != "karpenter.k8s.aws/instance-gpu-count" or operator != "In" or any(v != "0" for v in values)
    if key == "karpenter.k8s.aws/instance-category":
        return any(v in ("g", "p") for v in values)
    if key in ("karpenter.k8s.aws/instance-family", "node.kubernetes.io/instance-type"):
        return operator == "In" and any(GPU_FAMILY.match(v) for v in values)
    return False


def is_gpu_nodepool(props: Mapping[str, Any]) -> bool:
    """Whether a NodePool launches GPU nodes: it taints them `nvidia.com/gpu`, asks for GPU instances, or limits GPUs."""
    if not is_nodepool(props):
        return False
    taints = as_list(nodepool_template_spec(props).get("taints"))
    if any(isinstance(t, Mapping) and t.get("key") == GPU_RESOURCE for t in taints):
        return True
    if GPU_RESOURCE in nodepool_limits(props):
        return True
    return any(_requirement_wants_gpus(r) for r in requirements(props))


def nodepool_limits(props: Mapping[str, Any]) -> Mapping[str, Any]:
    """A NodePool's `spec.limits` (empty when it has none: the pool is unbounded)."""
    limits = (props.get("spec") or {}).get("limits")
    return limits if isinstance(limits, Mapping) else {}


def gpu_limit(props: Mapping[str, Any]) -> float | None:
    """A NodePool's `nvidia.com/gpu` limit; None when unset or malformed."""
    return quantity(nodepool_limits(props).get(GPU_RESOURCE))


def capacity_types(props: Mapping[str, Any]) -> set[str]:
    """Capacity types the NodePool may launch: from its capacity-type requirement, else Karpenter's on-demand default."""
    req = requirement(props, CAPACITY_TYPE_KEY)
    everything = {"spot", "on-demand", "reserved"}
    if req is None:
        return {"on-demand"}
    values = {str(v) for v in as_list(req.get("values"))}
    operator = req.get("operator")
    if operator == "In":
        return values
    if operator == "NotIn":
        return everything - values
    if operator == "Exists":
        return everything
    return set()
