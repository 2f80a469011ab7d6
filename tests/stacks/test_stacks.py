"""Every real stack renders, deterministically, and its Kubernetes objects validate against the schema."""

from collections.abc import Callable
from pathlib import Path

import kubernetes_validate
import pytest
from typer.testing import CliRunner

from infra import versions
from infra.review.cli import app
from infra.review.engine import list_stacks
from infra.review.graph import Graph
from tests.support.graph import assert_count, load_platform_config, manifest_objects
from tests.support.training import TRAIN_JOB, runtime_of, train_job_pod
from workloads.common.vocab import SUBNET_ROLE_TAG

STACKS = list_stacks()
runner = CliRunner()


def test_the_four_environments_exist() -> None:
    assert STACKS == ["dev", "local", "prod", "staging"]


@pytest.mark.parametrize("stack", STACKS)
def test_stack_renders(stack: str, stack_graph: Callable[[str], Graph]) -> None:
    graph = stack_graph(stack)
    assert graph.resources
    assert [r.urn for r in graph.resources] == sorted(r.urn for r in graph.resources)


def test_render_cli_is_byte_identical_across_runs(tmp_path: Path) -> None:
    outputs = []
    for run in ("a", "b"):
        result = runner.invoke(app, ["render", "--stack", "prod", "--out", str(tmp_path / run)])
        assert result.exit_code == 0, result.output
        files = sorted(p for p in (tmp_path / run).rglob("*") if p.is_file())
        outputs.append({p.relative_to(tmp_path / run): p.read_bytes() for p in files})
    assert outputs[0] == outputs[1]
    assert Path("graph.json") in outputs[0]
    assert any(str(p).startswith("manifests/") for p in outputs[0])


def test_prod_acceptance_shape(prod: Graph) -> None:
    assert_count(prod, "aws:ec2/vpc:Vpc", 1)
    assert_count(prod, "aws:ec2/natGateway:NatGateway", 3)
    private = [s for s in prod.of_type("aws:ec2/subnet:Subnet") if s.inputs["tags"][SUBNET_ROLE_TAG] == "private"]
    assert len(private) >= 3
    assert_count(prod, "aws:eks/addon:Addon", 5)
    assert_count(prod, "aws:s3/bucket:Bucket", 4)  # datasets, checkpoints, models, in-VPC deploy sources


def test_staging_sits_between_dev_and_prod(stack_graph: Callable[[str], Graph]) -> None:
    staging = stack_graph("staging")
    assert staging.one("aws:eks/cluster:Cluster").inputs["vpcConfig"]["endpointPublicAccess"] is False
    assert staging.one("aws:elasticache/replicationGroup:ReplicationGroup").inputs["automaticFailoverEnabled"] is True
    assert staging.one("aws:eks/cluster:Cluster").inputs["deletionProtection"] is False


def test_local_stack_has_no_aws_resource_and_no_aws_provider(stack_graph: Callable[[str], Graph]) -> None:
    local = stack_graph("local")
    assert not [r.urn for r in local.resources if r.type.startswith("aws:") or r.type == "pulumi:providers:aws"]
    assert '"aws:' not in local.to_json()
    assert local.one("pulumi:providers:kubernetes")


@pytest.mark.parametrize("stack", STACKS)
def test_core_kubernetes_objects_validate_against_the_schema(stack: str, stack_graph: Callable[[str], Graph]) -> None:
    config = load_platform_config(stack)
    version = config.cluster.version if config.cluster else versions.EKS_DEFAULT_VERSION
    validated, skipped = set(), set()
    for obj in manifest_objects(stack_graph(stack)):
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            skipped.add(obj["apiVersion"])  # CRDs (Karpenter, Istio, Prometheus operator) have no bundled schema
            continue
        validated.add(obj["kind"])
    # Only custom resources may go unchecked: a built-in group (core, apps, *.k8s.io) always has a schema.
    builtin = {api for api in skipped if "." not in api.split("/")[0] or api.split("/")[0].endswith(".k8s.io")}
    assert not builtin, f"built-in kinds skipped: {sorted(builtin)}"
    assert "Namespace" in validated, sorted(validated)  # every stack owns its workload namespaces


def test_preview_summarises_every_stack() -> None:
    result = runner.invoke(app, ["preview", "--json"])
    assert result.exit_code == 0, result.output
    assert '"stack": "prod"' in result.stdout and '"stack": "local"' in result.stdout


def test_local_stack_runs_minio_redis_and_one_cpu_job_and_service(stack_graph: Callable[[str], Graph]) -> None:
    local = stack_graph("local")
    deployments = {r.inputs["metadata"]["name"] for r in local.of_type("kubernetes:apps/v1:Deployment")}
    assert {"minio", "redis", "tiny-lm"} <= deployments
    job = local.one(TRAIN_JOB, "tiny-lm-job").inputs
    container = train_job_pod(local, job)["spec"]["containers"][0]
    assert "nvidia.com/gpu" not in container["resources"]["limits"]
    # The local stack's MinIO keys reach the ranks as env read from the namespace's Secret.
    assert {"name": "AWS_SECRET_ACCESS_KEY", "valueFrom": {"secretKeyRef": {
        "name": "s3-credentials", "key": "AWS_SECRET_ACCESS_KEY"}}} in container["env"]


@pytest.mark.parametrize("stack", ["local", "dev"])
def test_queued_trainjobs_carry_the_queue_label_the_runtime_ref_the_restart_policy_and_the_timeouts(
        stack_graph: Callable[[str], Graph], stack: str) -> None:
    graph = stack_graph(stack)
    queued = {"local": {"tiny-lm": "ml", "recommender": "ml"}, "dev": {"lm-small": "research"}}[stack]
    jobs = {r.inputs["metadata"]["name"]: r.inputs for r in graph.of_type(TRAIN_JOB)}
    for name, queue in queued.items():
        job = jobs[name]
        assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == queue
        assert job["spec"]["runtimeRef"]["name"] == "modelplane-torch"
        restart = runtime_of(graph, job)["spec"]["template"]["spec"]["failurePolicy"]
        assert restart == {"maxRestarts": 3, "restartStrategy": "BlockingRecreate"}
        container = train_job_pod(graph, job)["spec"]["containers"][0]
        assert {"name": "TORCH_NCCL_ASYNC_ERROR_HANDLING", "value": "1"} in container["env"]
        if job["spec"]["trainer"].get("command") != ["python", "-m", "workloads.recommend.train"]:
            assert container["args"][container["args"].index("--collective-timeout") + 1] == "1800"


@pytest.mark.parametrize("stack", list_stacks())
def test_no_stack_renders_a_training_operator_v1_job(stack_graph: Callable[[str], Graph], stack: str) -> None:
    kinds = {r.inputs.get("kind") for r in stack_graph(stack).kubernetes_objects()}
    assert not kinds & {"PyTorchJob", "TFJob"}, f"{stack} renders {kinds & {'PyTorchJob', 'TFJob'}}"


def test_dev_and_prod_declare_gpu_training_and_inference(stack_graph: Callable[[str], Graph]) -> None:
    for stack in ("dev", "prod"):
        graph = stack_graph(stack)
        assert graph.of_type(TRAIN_JOB)
        assert graph.of_type("kubernetes:autoscaling/v2:HorizontalPodAutoscaler")
