"""Kueue: GPU jobs in team namespaces go through a queue, and the queues' quotas are what the node pools can supply.

A workload Kueue manages carries the `kueue.x-k8s.io/queue-name` label naming a LocalQueue of its namespace
(https://kueue.sigs.k8s.io/docs/tasks/run/jobs/); with `manageJobsWithoutQueueName: false` (the chart's default, and
ours) Kueue's webhook leaves an unlabelled job alone, so it takes GPUs outside every team's quota. The rule reads GPU
requests where each kind keeps them: container and init-container `resources` under any pod template (batch/v1 Job
`spec.template`, JobSet `spec.replicatedJobs[].template.spec.template`) and TrainJob's `spec.trainer.resourcesPerNode`
(kubeflow/trainer v2.3.0 pkg/apis/trainer/v1alpha1/trainjob_types.go: the pod patches of its `runtimePatches` carry
no resources). A TrainJob also runs its runtime's pod templates: the ClusterTrainingRuntime (or TrainingRuntime of its
namespace) its `spec.runtimeRef` names, read when the stack holds it. resourcesPerNode merges key by key over the
trainer's `node` container only, so that container's GPUs count unless resourcesPerNode names a GPU amount, and every
other container's (initializers, sidecars) always count.
A team namespace is one holding a LocalQueue in the stack (every team's has one, and a LocalQueue is what the label
must name), plus any named in `teamNamespaces`. Where the stack holds the namespace's LocalQueues, a label naming none
of them is a violation too: Kueue leaves such a workload inadmissible.

A ClusterQueue's `spec.resourceGroups[].flavors[].resources[].nominalQuota` (the same in Kueue v0.19.2's
v1beta1 and v1beta2 CRDs, config/components/crd/bases/kueue.x-k8s.io_clusterqueues.yaml) is admitted capacity; when
the quotas of all queues on the flavors of one Karpenter NodePool add up past that pool's `spec.limits`,
Kueue admits pods Karpenter can never launch and they hold their siblings' GPUs while Pending
(kubernetes-sigs/kueue#5133). A ResourceFlavor selects nodes by `spec.nodeLabels`
(https://kueue.sigs.k8s.io/docs/concepts/resource_flavor/); it draws on the NodePools whose nodes carry
every one of them, as a template label or as an allowed value of a template requirement.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from typing import Any, Final

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    PolicyResource,
    ReportViolation,
    StackValidationArgs,
    StackValidationPolicy,
)

from policies.kube import (
    GPU_RESOURCE,
    JOBSET_GROUP,
    TRAINER_GROUP,
    api_group,
    describe,
    is_nodepool,
    is_trainjob,
    kind_of,
    labels,
    metadata,
    nodepool_limits,
)
from policies.kube import requirements as nodepool_requirements
from policies.wire import as_list, quantity, setting

KUEUE_GROUP: Final = "kueue.x-k8s.io"
"""The API group of Kueue's LocalQueue, ClusterQueue and ResourceFlavor."""
QUEUED_KINDS: Final = frozenset({
    ("batch", "Job"), (JOBSET_GROUP, "JobSet"), (TRAINER_GROUP, "TrainJob"),
})
"""(API group, kind) of the batch workloads Kueue's integrations admit."""
RESOURCE_KEYS: Final = ("resources", "resourcesPerNode")
"""Keys holding a ResourceRequirements: a container's (and a PodSpec's) and TrainJob's trainer's."""

_LABEL_SCHEMA = PolicyConfigSchema(properties={
    "queueLabel": {"type": "string", "minLength": 1, "default": "kueue.x-k8s.io/queue-name",
                   "description": "The label naming the LocalQueue a workload is submitted to."},
    "gpuResource": {"type": "string", "minLength": 1, "default": GPU_RESOURCE,
                    "description": "The extended resource that makes a workload a GPU workload."},
    "teamNamespaces": {
        "type": "array", "items": {"type": "string", "minLength": 1}, "default": [],
        "description": "Team namespaces besides those holding a LocalQueue in the stack.",
    },
})
_QUOTA_SCHEMA = PolicyConfigSchema(properties={
    "resources": {
        "type": "array", "items": {"type": "string", "minLength": 1}, "default": [GPU_RESOURCE, "cpu", "memory"],
        "description": "Resources whose summed nominal quotas must fit the NodePools' spec.limits.",
    },
})


def _is_kueue(resource: PolicyResource, kind: str) -> bool:
    return kind_of(resource.props) == kind and api_group(resource.props) == KUEUE_GROUP


def _name(resource: PolicyResource) -> str:
    return str(metadata(resource.props).get("name") or resource.name)


def _namespace(resource: PolicyResource) -> str:
    return str(metadata(resource.props).get("namespace") or "default")


def gpu_requests(node: Any, path: str, gpu: str) -> Iterator[str]:
    """Paths of every ResourceRequirements under `node` that requests or limits a positive amount of `gpu`."""
    if isinstance(node, Mapping):
        for key, value in node.items():
            where = f"{path}.{key}"
            if key in RESOURCE_KEYS and isinstance(value, Mapping):
                for field in ("requests", "limits"):
                    amounts = value.get(field)
                    if isinstance(amounts, Mapping) and (quantity(amounts.get(gpu)) or 0) > 0:
                        yield f"{where}.{field}"
            else:
                yield from gpu_requests(value, where, gpu)
    elif isinstance(node, list):
        for i, item in enumerate(node):
            name = item.get("name") if isinstance(item, Mapping) else None
            yield from gpu_requests(item, f"{path}[{name if name else i}]", gpu)


ANCESTOR_LABEL: Final = "trainer.kubeflow.org/trainjob-ancestor-step"
"""Marks the runtime's replicated Job a TrainJob's `trainer` applies to (kubeflow/trainer v2.3.0 pkg/constants)."""
TRAINER_ANCESTOR: Final = "trainer"
"""ANCESTOR_LABEL's value on the trainer's replicated Job (constants.AncestorTrainer)."""
TRAINER_CONTAINER: Final = "node"
"""The container of that Job that resourcesPerNode is merged over (constants.Node)."""


def _without_trainer_resources(runtime_spec: Any) -> Any:
    """A runtime spec without the resources a TrainJob's resourcesPerNode replaces: those of the `node` container of
    the trainer's replicated Job, when the runtime has an mlPolicy (kubeflow/trainer v2.3.0
    pkg/runtime/core/trainingruntime.go); other Jobs and containers (initializers, sidecars) keep theirs."""
    spec = copy.deepcopy(runtime_spec)
    if not isinstance(spec, dict) or not spec.get("mlPolicy"):
        return spec
    for job in as_list(((spec.get("template") or {}).get("spec") or {}).get("replicatedJobs")):
        template = job.get("template") if isinstance(job, dict) else None
        if not isinstance(template, dict) or labels(template).get(ANCESTOR_LABEL) != TRAINER_ANCESTOR:
            continue
        pod = ((template.get("spec") or {}).get("template") or {}).get("spec") or {}
        for container in as_list(pod.get("containers")):
            if isinstance(container, dict) and container.get("name") == TRAINER_CONTAINER:
                container.pop("resources", None)
    return spec


def _runtime_gpu_requests(trainjob: PolicyResource, resources: list[PolicyResource], gpu: str) -> Iterator[str]:
    """GPU requests a TrainJob inherits from its runtime's pod templates: all of them, but the trainer container's
    only when the TrainJob's resourcesPerNode names no GPU amount (it merges key by key over that container's)."""
    per_node = ((trainjob.props.get("spec") or {}).get("trainer") or {}).get("resourcesPerNode") or {}
    overridden = any(gpu in (per_node.get(field) or {}) for field in ("requests", "limits"))
    ref = (trainjob.props.get("spec") or {}).get("runtimeRef") or {}
    kind = ref.get("kind") or "ClusterTrainingRuntime"  # the CRD's defaults (trainjob_types.go RuntimeRef)
    group = ref.get("apiGroup") or TRAINER_GROUP
    for runtime in resources:
        if (kind_of(runtime.props), api_group(runtime.props), _name(runtime)) != (kind, group, ref.get("name")):
            continue
        if kind == "ClusterTrainingRuntime" or _namespace(runtime) == _namespace(trainjob):
            spec = runtime.props.get("spec")
            where = f"{kind} {_name(runtime)} spec"
            yield from gpu_requests(_without_trainer_resources(spec) if overridden else spec, where, gpu)


def _queue_label(args: StackValidationArgs, report: ReportViolation) -> None:
    label, gpu = setting(args, _LABEL_SCHEMA, "queueLabel"), setting(args, _LABEL_SCHEMA, "gpuResource")
    queues: dict[str, list[str]] = {namespace: [] for namespace in setting(args, _LABEL_SCHEMA, "teamNamespaces")}
    for resource in args.resources:
        if _is_kueue(resource, "LocalQueue"):
            queues.setdefault(_namespace(resource), []).append(_name(resource))
    for resource in args.resources:
        props = resource.props
        namespace = _namespace(resource)
        if (api_group(props), kind_of(props)) not in QUEUED_KINDS or namespace not in queues:
            continue
        value = labels(props).get(label)
        requested = list(gpu_requests(props.get("spec"), "spec", gpu))
        if is_trainjob(props):
            requested += _runtime_gpu_requests(resource, args.resources, gpu)
        names = sorted(queues[namespace])
        choice = f"one of its LocalQueues {names}" if names else "the team's LocalQueue"
        if requested and value and names and value not in names:
            # Kueue leaves a workload whose queue does not exist inadmissible: it would hold no GPUs, but never run.
            report(f"{describe(props, resource.name)} sets {label}={value!r}, but namespace {namespace} has no "
                   f"LocalQueue named {value!r}, so Kueue never admits it. Fix: set metadata.labels['{label}'] to "
                   f"{choice}.", resource.urn)
        elif requested and not value:
            report(f"{describe(props, resource.name)} requests {gpu} ({', '.join(requested)}) in team namespace "
                   f"{namespace} without the {label} label, so Kueue does not manage it: it takes GPUs outside every team's "
                   f"quota and without all-or-nothing admission. Fix: set metadata.labels['{label}'] to {choice} "
                   f"(TrainingJob's team sets it).",
                   resource.urn)


def _flavor_matches(node_labels: Mapping[str, Any], pool: PolicyResource) -> bool:
    """Whether a NodePool launches nodes carrying every one of a flavor's node labels."""
    template = (pool.props.get("spec") or {}).get("template") or {}
    pool_labels = (template.get("metadata") or {}).get("labels") or {}
    reqs = {str(r.get("key")): r for r in nodepool_requirements(pool.props)}
    for key, value in node_labels.items():
        if key in pool_labels:
            if str(pool_labels[key]) != str(value):
                return False
            continue
        req = reqs.get(key)
        if req is None:
            return False
        allowed = [str(v) for v in as_list(req.get("values"))]
        if not ((req.get("operator") == "In" and str(value) in allowed) or req.get("operator") == "Exists"):
            return False
    return True


def _pools_by_flavor(args: StackValidationArgs) -> dict[str, tuple[PolicyResource, ...]]:
    """ResourceFlavor name → the NodePools its node labels select (flavors without labels, or none, are left out)."""
    pools = [r for r in args.resources if r.resource_type.startswith("kubernetes:") and is_nodepool(r.props)]
    found: dict[str, tuple[PolicyResource, ...]] = {}
    for flavor in args.resources:
        if not _is_kueue(flavor, "ResourceFlavor"):
            continue
        node_labels = (flavor.props.get("spec") or {}).get("nodeLabels")
        if isinstance(node_labels, Mapping) and node_labels:
            matched = tuple(p for p in pools if _flavor_matches(node_labels, p))
            if matched:
                found[_name(flavor)] = matched
    return found


def _nominal_quotas(queue: PolicyResource) -> Iterator[tuple[str, str, float]]:
    """(flavor, resource, nominal quota) of every quota a ClusterQueue declares."""
    for group in as_list((queue.props.get("spec") or {}).get("resourceGroups")):
        for flavor in as_list(group.get("flavors") if isinstance(group, Mapping) else None):
            if not isinstance(flavor, Mapping):
                continue
            for entry in as_list(flavor.get("resources")):
                amount = quantity(entry.get("nominalQuota")) if isinstance(entry, Mapping) else None
                if amount:
                    yield str(flavor.get("name")), str(entry.get("name")), amount


def _amount(value: float, resource: str) -> str:
    if resource == "memory" and value >= 2**30:
        return f"{value / 2**30:g}Gi"
    return f"{value:g}"


def _quota_fits(args: StackValidationArgs, report: ReportViolation) -> None:
    checked = set(setting(args, _QUOTA_SCHEMA, "resources"))
    pools_of = _pools_by_flavor(args)
    # Flavors drawing on the same NodePools share those pools' limits, so their quotas add up together.
    shares: dict[tuple[tuple[str, ...], str], list[tuple[PolicyResource, str, float]]] = {}
    pools_at: dict[tuple[str, ...], tuple[PolicyResource, ...]] = {}
    for queue in args.resources:
        if not _is_kueue(queue, "ClusterQueue"):
            continue
        for flavor, resource, amount in _nominal_quotas(queue):
            if resource in checked and flavor in pools_of:
                urns = tuple(sorted(p.urn for p in pools_of[flavor]))
                pools_at[urns] = pools_of[flavor]
                shares.setdefault((urns, resource), []).append((queue, flavor, amount))
    for (urns, resource), entries in sorted(shares.items(), key=lambda item: item[0]):
        pools = pools_at[urns]
        limits = [quantity(nodepool_limits(p.props).get(resource)) for p in pools]
        if any(limit is None for limit in limits):
            continue  # a pool without a limit on this resource is unbounded
        limit = sum(limit or 0 for limit in limits)
        total = sum(amount for _, _, amount in entries)
        if total <= limit:
            continue
        pool_names = ", ".join(_name(p) for p in pools)
        shares_text = ", ".join(f"{_name(q)}/{f}={_amount(a, resource)}" for q, f, a in entries)
        for queue, flavor, amount in entries:
            report(f"ClusterQueue {_name(queue)} has a nominal {resource} quota of {_amount(amount, resource)} on "
                   f"flavor {flavor}; the quotas of all ClusterQueues on NodePool {pool_names} add up to "
                   f"{_amount(total, resource)} ({shares_text}), over the pool's spec.limits[{resource!r}] of "
                   f"{_amount(limit, resource)}, so Kueue admits pods Karpenter can never launch. Fix: lower the "
                   f"teams' quotas on that pool (modelplane:teams) or raise the pool's limit (gpuLimit, cpuLimit or "
                   f"memoryLimit of modelplane:gpuPools; the CPU pool's limits).", queue.urn)


KUEUE_QUEUE_LABEL = StackValidationPolicy(
    name="kueue-queue-label",
    description="A GPU Job, JobSet or TrainJob in a team namespace names its LocalQueue in the "
                "kueue.x-k8s.io/queue-name label.",
    validate=_queue_label, enforcement_level=EnforcementLevel.MANDATORY, config_schema=_LABEL_SCHEMA,
    url="https://kueue.sigs.k8s.io/docs/tasks/run/jobs/",
)
KUEUE_QUOTA_FITS_POOLS = StackValidationPolicy(
    name="kueue-quota-fits-pools",
    description="The nominal quotas of all ClusterQueues on a NodePool's flavors add up to no more than its "
                "spec.limits.",
    validate=_quota_fits, enforcement_level=EnforcementLevel.MANDATORY, config_schema=_QUOTA_SCHEMA,
    url="https://github.com/kubernetes-sigs/kueue/issues/5133",
)

POLICIES: Final = (KUEUE_QUEUE_LABEL, KUEUE_QUOTA_FITS_POOLS)
"""The Kueue rules."""
