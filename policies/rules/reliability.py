"""Reliability: production inference survives a node or zone loss; training jobs can resume.

Inference workloads are Deployments/StatefulSets labelled like `inferenceLabels`
(modelplane's InferenceService sets app.kubernetes.io/component=inference). Training jobs are Kubeflow Trainer v2
TrainJobs, and JobSets and batch Jobs labelled like `trainingLabels` (modelplane's TrainingJob sets
app.kubernetes.io/component=training on the JobSet it renders for TensorFlow).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Final

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    PolicyResource,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from policies.environment import ENVIRONMENT_SCHEMA, is_production
from policies.kube import (
    JOBSET_GROUP,
    api_group,
    containers,
    describe,
    is_trainjob,
    kind_of,
    labels,
    metadata,
    pod_specs,
    pod_template_labels,
    selector_matches,
    trainjob_trainer,
)
from policies.wire import as_list, quantity, setting

WORKLOAD_KINDS: Final = frozenset({"Deployment", "StatefulSet"})
ZONE_KEY: Final = "topology.kubernetes.io/zone"
_INFERENCE_LABELS: Final[dict[str, Any]] = {
    "type": "object", "additionalProperties": {"type": "string"},
    "default": {"app.kubernetes.io/component": "inference"},
    "description": "Labels (on the workload or its pod template) that mark an inference workload.",
}
_INFERENCE_SCHEMA = PolicyConfigSchema(properties={**ENVIRONMENT_SCHEMA, "inferenceLabels": _INFERENCE_LABELS})
_REPLICAS_SCHEMA = PolicyConfigSchema(properties={
    **ENVIRONMENT_SCHEMA,
    "inferenceLabels": _INFERENCE_LABELS,
    "minReplicas": {"type": "integer", "minimum": 1, "default": 2,
                    "description": "Fewest replicas (HPA floor, else spec.replicas) of a production inference workload."},
    "exemptLabels": {
        "type": "object", "additionalProperties": {"type": "string"}, "default": {"modelplane.io/track": "canary"},
        "description": "Labels of workloads exempt from minReplicas (canary tracks serve a slice of traffic).",
    },
})


def _has_labels(wanted: Mapping[str, Any], *label_sets: Mapping[str, Any]) -> bool:
    return bool(wanted) and any(all(found.get(k) == v for k, v in wanted.items()) for found in label_sets)


def _is_inference(props: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    return kind_of(props) in WORKLOAD_KINDS and _has_labels(wanted, labels(props), pod_template_labels(props))


def _inference_workloads(args: StackValidationArgs, schema: PolicyConfigSchema) -> Iterator[PolicyResource]:
    wanted = setting(args, schema, "inferenceLabels")
    return (r for r in args.resources if _is_inference(r.props, wanted))


def _namespace(props: Mapping[str, Any]) -> str:
    return str(metadata(props).get("namespace") or "default")


def _min_replicas(args: StackValidationArgs, report: ReportViolation) -> None:
    if not is_production(args.get_config() or {}):
        return
    floor, exempt = setting(args, _REPLICAS_SCHEMA, "minReplicas"), setting(args, _REPLICAS_SCHEMA, "exemptLabels")
    autoscalers = [r.props for r in args.resources if kind_of(r.props) == "HorizontalPodAutoscaler"]
    for workload in _inference_workloads(args, _REPLICAS_SCHEMA):
        if _has_labels(exempt, labels(workload.props), pod_template_labels(workload.props)):
            continue
        name, namespace = metadata(workload.props).get("name"), _namespace(workload.props)
        hpa = next((h for h in autoscalers if _namespace(h) == namespace
                    and (h.get("spec") or {}).get("scaleTargetRef", {}).get("name") == name
                    and (h.get("spec") or {}).get("scaleTargetRef", {}).get("kind") == kind_of(workload.props)), None)
        spec = (hpa or workload.props).get("spec") or {}
        replicas = quantity(spec.get("minReplicas" if hpa else "replicas"))
        replicas = 1 if replicas is None else replicas
        if replicas < floor:
            source = "its HPA's minReplicas" if hpa else "spec.replicas"
            report(f"{describe(workload.props, workload.name)} runs {int(replicas)} replica(s) ({source}) in a "
                   f"production stack, so one node loss takes the model offline. Fix: set minReplicas >= {floor} "
                   f"(modelplane:inference services[].minReplicas).", workload.urn)


def _pdb(args: StackValidationArgs, report: ReportViolation) -> None:
    if not is_production(args.get_config() or {}):
        return
    budgets = [r.props for r in args.resources if kind_of(r.props) == "PodDisruptionBudget"]
    for workload in _inference_workloads(args, _INFERENCE_SCHEMA):
        pod_labels, namespace = pod_template_labels(workload.props), _namespace(workload.props)
        if not any(_namespace(b) == namespace and selector_matches((b.get("spec") or {}).get("selector"), pod_labels)
                   for b in budgets):
            report(f"{describe(workload.props, workload.name)} has no PodDisruptionBudget in a production stack, so "
                   f"a node drain can evict every replica at once. Fix: add a policy/v1 PodDisruptionBudget selecting "
                   f"its pods with maxUnavailable: 1.", workload.urn)


def _production_inference(args: ResourceValidationArgs) -> bool:
    return (_is_inference(args.props, setting(args, _INFERENCE_SCHEMA, "inferenceLabels"))
            and is_production(args.get_config() or {}))


def _probes(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if not _production_inference(args):
        return
    for path, spec in pod_specs(args.props):
        for field, container in containers(spec):
            if not field.startswith("containers"):
                continue
            missing = [probe for probe in ("readinessProbe", "livenessProbe") if not container.get(probe)]
            if missing:
                report(f"{describe(args.props, args.name)} {path}.{field} has no {' or '.join(missing)}, so traffic "
                       f"reaches pods that cannot serve and hung servers are never restarted. Fix: add both probes "
                       f"(the server exposes /v2/health/ready and /v2/health/live).", args.urn)


def _spreads_across_zones(spec: Mapping[str, Any]) -> bool:
    if any(c.get("topologyKey") == ZONE_KEY for c in as_list(spec.get("topologySpreadConstraints"))):
        return True
    anti = (spec.get("affinity") or {}).get("podAntiAffinity") or {}
    preferred = as_list(anti.get("preferredDuringSchedulingIgnoredDuringExecution"))
    terms = [*as_list(anti.get("requiredDuringSchedulingIgnoredDuringExecution")),
             *((t or {}).get("podAffinityTerm") or {} for t in preferred)]
    return any(t.get("topologyKey") == ZONE_KEY for t in terms)


def _zone_spread(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if not _production_inference(args):
        return
    for path, spec in pod_specs(args.props):
        if not _spreads_across_zones(spec):
            report(f"{describe(args.props, args.name)} {path} does not spread pods across zones, so all replicas may "
                   f"land in one AZ. Fix: add a topologySpreadConstraint on {ZONE_KEY} (maxSkew 1).", args.urn)


_CHECKPOINT_SCHEMA = PolicyConfigSchema(properties={
    "checkpointFlags": {
        "type": "array", "items": {"type": "string"},
        "default": ["--checkpoints", "--checkpoint-uri", "--checkpoint-dir", "--backup-uri"],
        "description": "Trainer flags whose value is the durable checkpoint location.",
    },
    "checkpointEnv": {
        "type": "array", "items": {"type": "string"}, "default": ["CHECKPOINT_URI", "MODELPLANE_CHECKPOINT_URI"],
        "description": "Environment variables whose value is the durable checkpoint location.",
    },
    "uriSchemes": {
        "type": "array", "items": {"type": "string"}, "default": ["s3://", "gs://", "az://", "hdfs://"],
        "description": "Durable storage URI prefixes a checkpoint location must use (not a pod-local path).",
    },
    "trainingLabels": {
        "type": "object", "additionalProperties": {"type": "string"},
        "default": {"app.kubernetes.io/component": "training"},
        "description": "Labels (on the object) that make a JobSet or batch Job a training job; every TrainJob is one.",
    },
})
LABELLED_KINDS: Final = frozenset({(JOBSET_GROUP, "JobSet"), ("batch", "Job")})
"""(API group, kind) of the generic batch workloads that are training jobs when labelled like `trainingLabels`."""


def _is_training_job(args: ResourceValidationArgs) -> bool:
    props = args.props
    if is_trainjob(props):
        return True
    return ((api_group(props), kind_of(props)) in LABELLED_KINDS
            and _has_labels(setting(args, _CHECKPOINT_SCHEMA, "trainingLabels"), labels(props)))


def _checkpoint_values(props: Mapping[str, Any], flags: list[str], env_names: list[str]) -> Iterator[str]:
    sources = [c for _, spec in pod_specs(props) for _, c in containers(spec)]
    trainer = trainjob_trainer(props)
    if trainer:
        sources.append(trainer)  # a TrainJob has no pod template: its trainer sets the command, args and env
    for container in sources:
        words = [str(w) for w in [*as_list(container.get("command")), *as_list(container.get("args"))]]
        for i, word in enumerate(words):
            flag, equals, value = word.partition("=")
            if flag in flags:
                yield value if equals else (words[i + 1] if i + 1 < len(words) else "")
        for env in as_list(container.get("env")):
            if isinstance(env, Mapping) and env.get("name") in env_names and env.get("value"):
                yield str(env["value"])


def _checkpoint_uri(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if not args.resource_type.startswith("kubernetes:") or not _is_training_job(args):
        return
    flags, env_names = setting(args, _CHECKPOINT_SCHEMA, "checkpointFlags"), setting(args, _CHECKPOINT_SCHEMA, "checkpointEnv")
    schemes = tuple(setting(args, _CHECKPOINT_SCHEMA, "uriSchemes"))
    values = list(_checkpoint_values(args.props, flags, env_names))
    if not any(v.startswith(schemes) for v in values):
        got = f" (got {values})" if values else ""
        report(f"{describe(args.props, args.name)} has no durable checkpoint location{got}, so a spot reclaim or a "
               f"crashed rank restarts training from step 0. Fix: pass one of {flags} with an {'/'.join(schemes)} URI "
               f"(TrainingJob sets --checkpoints, or --backup-uri for TensorFlow, from the checkpoints bucket).", args.urn)


_URL = "https://kubernetes.io/docs/concepts/workloads/pods/disruptions/"
INFERENCE_MIN_REPLICAS = StackValidationPolicy(
    name="inference-min-replicas",
    description="In production, inference workloads keep at least 2 replicas (HPA floor or spec.replicas).",
    validate=_min_replicas, enforcement_level=EnforcementLevel.MANDATORY, config_schema=_REPLICAS_SCHEMA, url=_URL,
)
INFERENCE_PDB = StackValidationPolicy(
    name="inference-pdb",
    description="In production, every inference workload is covered by a PodDisruptionBudget.",
    validate=_pdb, enforcement_level=EnforcementLevel.MANDATORY, config_schema=_INFERENCE_SCHEMA, url=_URL,
)
INFERENCE_PROBES = ResourceValidationPolicy(
    name="inference-probes",
    description="In production, inference containers have readiness and liveness probes.",
    validate=_probes, enforcement_level=EnforcementLevel.MANDATORY, config_schema=_INFERENCE_SCHEMA,
    url="https://kubernetes.io/docs/concepts/configuration/liveness-readiness-startup-probes/",
)
INFERENCE_ZONE_SPREAD = ResourceValidationPolicy(
    name="inference-zone-spread",
    description="In production, inference pods spread across availability zones.",
    validate=_zone_spread, enforcement_level=EnforcementLevel.MANDATORY, config_schema=_INFERENCE_SCHEMA,
    url="https://kubernetes.io/docs/concepts/scheduling-eviction/topology-spread-constraints/",
)
TRAINING_CHECKPOINT_URI = ResourceValidationPolicy(
    name="training-checkpoint-uri",
    description="Training jobs (TrainJobs; JobSets and Jobs labelled as training) write checkpoints to durable "
                "storage (an s3:// URI) so they can resume.",
    validate=_checkpoint_uri, enforcement_level=EnforcementLevel.MANDATORY, config_schema=_CHECKPOINT_SCHEMA,
)

POLICIES: Final = (INFERENCE_MIN_REPLICAS, INFERENCE_PDB, INFERENCE_PROBES, INFERENCE_ZONE_SPREAD,
                   TRAINING_CHECKPOINT_URI)
"""The reliability rules."""
