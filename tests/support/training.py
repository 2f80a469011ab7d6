"""The pods a rendered TrainJob or JobSet would run, for tests that look at training pods (labels, env, security).

A TrainJob's pod is its ClusterTrainingRuntime's `node` template with the TrainJob's runtime patches and `trainer`
applied, as Trainer v2.3.0 builds it (pkg/runtime/core/trainingruntime.go: pod labels and spec fields of each patch,
volumes merged by name, resourcesPerNode merged over the container's resources key by key;
pkg/runtime/framework/plugins/jobset/jobset.go: the trainer's image, command, args and env on the container `node`).
A JobSet's pods are its replicated Jobs' templates.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

from infra.review.graph import Graph, Resource

TRAIN_JOB = "kubernetes:trainer.kubeflow.org/v1alpha1:TrainJob"
"""Type token of a rendered TrainJob."""
RUNTIME = "kubernetes:trainer.kubeflow.org/v1alpha1:ClusterTrainingRuntime"
"""Type token of a rendered ClusterTrainingRuntime."""
JOBSET = "kubernetes:jobset.x-k8s.io/v1alpha2:JobSet"
"""Type token of a rendered JobSet."""


def runtime_of(graph: Graph, train_job: dict[str, Any]) -> dict[str, Any]:
    """The inputs of the ClusterTrainingRuntime the TrainJob `train_job` (inputs) references."""
    name = train_job["spec"]["runtimeRef"]["name"]
    found = [r.inputs for r in graph.of_type(RUNTIME) if r.inputs["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one ClusterTrainingRuntime {name!r}, found {len(found)}"
    return found[0]


def _by_name(items: list[dict[str, Any]], name: str) -> dict[str, Any]:
    (item,) = [i for i in items if i["name"] == name]
    return item


def _merge_by_name(base: list[dict[str, Any]], patch: list[dict[str, Any]]) -> list[dict[str, Any]]:
    patched = {item["name"]: item for item in patch}
    merged = [patched.pop(item["name"], item) for item in base]
    return [*merged, *patched.values()]


def train_job_pod(graph: Graph, train_job: dict[str, Any]) -> dict[str, Any]:
    """The pod template (metadata and spec) of the TrainJob `train_job`'s `node` pods."""
    (job,) = [j for j in runtime_of(graph, train_job)["spec"]["template"]["spec"]["replicatedJobs"]
              if j["name"] == "node"]
    pod: dict[str, Any] = copy.deepcopy(job["template"]["spec"]["template"])
    for patch in train_job["spec"].get("runtimePatches", []):
        for job_patch in patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]:
            if job_patch["name"] != "node":
                continue
            pod_patch = job_patch["template"]["spec"]["template"]
            pod["metadata"]["labels"] = {**pod["metadata"].get("labels", {}), **pod_patch["metadata"]["labels"]}
            for key, value in pod_patch.get("spec", {}).items():
                pod["spec"][key] = _merge_by_name(pod["spec"].get(key, []), value) if key == "volumes" else value
    trainer = train_job["spec"]["trainer"]
    container = _by_name(pod["spec"]["containers"], "node")
    container.update({key: trainer[key] for key in ("image", "command", "args") if key in trainer})
    container["env"] = _merge_by_name(container.get("env", []), trainer.get("env", []))
    base = container.get("resources", {})
    per_node = trainer.get("resourcesPerNode", {})
    container["resources"] = {kind: {**base.get(kind, {}), **per_node.get(kind, {})} for kind in {*base, *per_node}}
    return pod


def jobset_pod(jobset: dict[str, Any]) -> dict[str, Any]:
    """The pod template of the JobSet `jobset` (inputs): its one replicated Job's."""
    (job,) = jobset["spec"]["replicatedJobs"]
    pod: dict[str, Any] = job["template"]["spec"]["template"]
    return pod


def training_pods(graph: Graph) -> Iterator[tuple[Resource, dict[str, Any]]]:
    """(resource, pod template) of every TrainJob and JobSet in the graph."""
    for resource in graph.of_type(TRAIN_JOB):
        yield resource, train_job_pod(graph, resource.inputs)
    for resource in graph.of_type(JOBSET):
        yield resource, jobset_pod(resource.inputs)
