"""Reliability rules: production inference (replicas, PDB, probes, zone spread) and training checkpoints."""

import copy

import pytest

from policies.rules.reliability import (
    INFERENCE_MIN_REPLICAS,
    INFERENCE_PDB,
    INFERENCE_PROBES,
    INFERENCE_ZONE_SPREAD,
    TRAINING_CHECKPOINT_URI,
)
from tests.policies.helpers import Res, k8s, k8s_type, stack_violations, urn, violations

LABELS = {"app.kubernetes.io/name": "llm", "app.kubernetes.io/component": "inference"}
PROBE = {"httpGet": {"path": "/v2/health/ready", "port": "http"}}
POD = {
    "containers": [{"name": "server", "image": "serve:1", "readinessProbe": PROBE, "livenessProbe": PROBE}],
    "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
                                   "whenUnsatisfiable": "ScheduleAnyway", "labelSelector": {"matchLabels": LABELS}}],
}


def inference(name: str = "llm", replicas: int = 2, pod: dict | None = None, track: str = "stable") -> Res:
    pod_labels = {**LABELS, "modelplane.io/track": track}
    obj = k8s("apps/v1", "Deployment", name, {"replicas": replicas, "selector": {"matchLabels": pod_labels},
                                              "template": {"metadata": {"labels": pod_labels},
                                                           "spec": pod or copy.deepcopy(POD)}},
              namespace="inference", labels=pod_labels)
    return Res(k8s_type(obj), f"{name}-{track}", obj)


def hpa(target: str, minimum: int | None) -> Res:
    spec = {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target}, "maxReplicas": 10}
    if minimum is not None:
        spec["minReplicas"] = minimum
    obj = k8s("autoscaling/v2", "HorizontalPodAutoscaler", target, spec, namespace="inference")
    return Res(k8s_type(obj), f"{target}-hpa", obj)


def pdb(selector: dict, namespace: str = "inference") -> Res:
    obj = k8s("policy/v1", "PodDisruptionBudget", "llm", {"maxUnavailable": 1, "selector": selector},
              namespace=namespace)
    return Res(k8s_type(obj), f"llm-pdb-{namespace}", obj)


def test_replicated_inference_complies_in_production() -> None:
    assert stack_violations(INFERENCE_MIN_REPLICAS, [inference(replicas=2)], production=True) == []


def test_single_replica_inference_is_reported_in_production_only() -> None:
    single = inference(replicas=1)
    assert stack_violations(INFERENCE_MIN_REPLICAS, [single], production=False) == []
    found = stack_violations(INFERENCE_MIN_REPLICAS, [single], production=True)
    assert [u for u, _ in found] == [urn(single.type, single.name)] and "spec.replicas" in found[0][1]


def test_hpa_floor_decides_over_spec_replicas() -> None:
    found = stack_violations(INFERENCE_MIN_REPLICAS, [inference(replicas=3), hpa("llm", None)], production=True)
    assert len(found) == 1 and "HPA's minReplicas" in found[0][1]
    assert stack_violations(INFERENCE_MIN_REPLICAS, [inference(replicas=1), hpa("llm", 2)], production=True) == []


def test_canary_tracks_are_exempt_from_the_floor() -> None:
    canary = inference(name="llm-canary", replicas=1, track="canary")
    assert stack_violations(INFERENCE_MIN_REPLICAS, [canary], production=True) == []


def test_non_inference_workloads_are_ignored() -> None:
    obj = k8s("apps/v1", "Deployment", "tools", {"replicas": 1, "template": {"spec": POD}})
    assert stack_violations(INFERENCE_MIN_REPLICAS, [Res(k8s_type(obj), "tools", obj)], production=True) == []


def test_inference_covered_by_a_pdb_complies() -> None:
    selector = {"matchLabels": {"app.kubernetes.io/name": "llm"}}
    assert stack_violations(INFERENCE_PDB, [inference(), pdb(selector)], production=True) == []
    expression = {"matchExpressions": [{"key": "app.kubernetes.io/name", "operator": "In", "values": ["llm"]}]}
    assert stack_violations(INFERENCE_PDB, [inference(), pdb(expression)], production=True) == []


@pytest.mark.parametrize("budget", [
    [],
    [pdb({"matchLabels": {"app.kubernetes.io/name": "other"}})],
    [pdb({"matchLabels": {"app.kubernetes.io/name": "llm"}}, namespace="default")],
])
def test_inference_without_a_matching_pdb_is_reported(budget) -> None:
    found = stack_violations(INFERENCE_PDB, [inference(), *budget], production=True)
    assert len(found) == 1 and "PodDisruptionBudget" in found[0][1]
    assert stack_violations(INFERENCE_PDB, [inference(), *budget], production=False) == []


def test_inference_with_probes_complies() -> None:
    workload = inference()
    assert violations(INFERENCE_PROBES, workload.type, workload.props, production=True) == []


def test_missing_probe_is_reported_in_production() -> None:
    pod = copy.deepcopy(POD)
    del pod["containers"][0]["livenessProbe"]
    workload = inference(pod=pod)
    found = violations(INFERENCE_PROBES, workload.type, workload.props, production=True)
    assert len(found) == 1 and "livenessProbe" in found[0]
    assert violations(INFERENCE_PROBES, workload.type, workload.props, production=False) == []


def test_zone_spread_complies() -> None:
    workload = inference()
    assert violations(INFERENCE_ZONE_SPREAD, workload.type, workload.props, production=True) == []
    pod = {**copy.deepcopy(POD), "topologySpreadConstraints": [], "affinity": {"podAntiAffinity": {
        "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100, "podAffinityTerm": {
            "topologyKey": "topology.kubernetes.io/zone", "labelSelector": {"matchLabels": LABELS}}}]}}}
    anti = inference(pod=pod)
    assert violations(INFERENCE_ZONE_SPREAD, anti.type, anti.props, production=True) == []


def test_missing_zone_spread_is_reported_in_production() -> None:
    pod = {**copy.deepcopy(POD), "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
                                                                "whenUnsatisfiable": "DoNotSchedule"}]}
    workload = inference(pod=pod)
    found = violations(INFERENCE_ZONE_SPREAD, workload.type, workload.props, production=True)
    assert len(found) == 1 and "topology.kubernetes.io/zone" in found[0]


def trainjob(args: list[str], env: list[dict] | None = None) -> dict:
    trainer = {"image": "trainer:1", "args": args, "env": env or []}
    return k8s("trainer.kubeflow.org/v1alpha1", "TrainJob", "pretrain",
               {"runtimeRef": {"name": "modelplane-torch"}, "trainer": trainer}, namespace="team-ml")


def jobset(args: list[str], labels: dict[str, str] | None = None) -> dict:
    """A TensorFlow-style JobSet: one replicated job of workers, labelled as training unless `labels` says otherwise."""
    container = {"name": "tensorflow", "image": "trainer:1", "args": args}
    replicated = [{"name": "worker", "replicas": 2,
                   "template": {"spec": {"template": {"spec": {"containers": [container]}}}}}]
    return k8s("jobset.x-k8s.io/v1alpha2", "JobSet", "digits", {"replicatedJobs": replicated}, namespace="team-ml",
               labels={"app.kubernetes.io/component": "training"} if labels is None else labels)


@pytest.mark.parametrize("obj", [
    trainjob(["--steps", "100", "--checkpoints", "s3://ckpt/pretrain"]),
    trainjob(["--checkpoint-uri=s3://ckpt/pretrain"]),
    trainjob([], env=[{"name": "CHECKPOINT_URI", "value": "s3://ckpt/x"}]),
    jobset(["--backup-dir", "/backup", "--backup-uri", "s3://ckpt/tf"]),
])
def test_training_with_a_durable_checkpoint_complies(obj) -> None:
    assert violations(TRAINING_CHECKPOINT_URI, k8s_type(obj), obj) == []


@pytest.mark.parametrize(("obj", "expected"), [
    (trainjob(["--steps", "100"]), "TrainJob team-ml/pretrain has no durable checkpoint location"),
    (trainjob(["--checkpoints", "/tmp/ckpt"]), "got ['/tmp/ckpt']"),
    (trainjob(["--checkpoints"]), "got ['']"),
    (jobset(["--backup-dir", "/backup"]), "JobSet team-ml/digits has no durable checkpoint location"),
    (jobset(["--backup-uri", "/backup"]), "got ['/backup']"),
])
def test_training_without_a_durable_checkpoint_is_reported(obj, expected) -> None:
    found = violations(TRAINING_CHECKPOINT_URI, k8s_type(obj), obj)
    assert len(found) == 1 and expected in found[0]


def test_a_jobset_is_a_training_job_only_when_labelled_as_one() -> None:
    batch = jobset(["--input", "s3://data/raw"], labels={"app.kubernetes.io/component": "etl"})
    assert violations(TRAINING_CHECKPOINT_URI, k8s_type(batch), batch) == []
    assert violations(TRAINING_CHECKPOINT_URI, k8s_type(batch), batch,
                      config={"trainingLabels": {"app.kubernetes.io/component": "etl"}})


def test_a_training_runtime_is_a_template_not_a_job() -> None:
    runtime = k8s("trainer.kubeflow.org/v1alpha1", "ClusterTrainingRuntime", "modelplane-torch",
                  {"template": {"spec": {"replicatedJobs": []}}}, namespace=None,
                  labels={"app.kubernetes.io/component": "training"})
    assert violations(TRAINING_CHECKPOINT_URI, k8s_type(runtime), runtime) == []
