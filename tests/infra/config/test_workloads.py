"""`modelplane:training` and `modelplane:inference`: each rule of a job or service entry, by its message and key path.

These rules are the only validation of the workload components: TrainingJob and InferenceService take
the parsed entries as they are.
"""

from typing import Any

import pytest

from infra.config.errors import ConfigError
from infra.config.parse import parse_config
from tests.support.graph import render_variant, stack_config_with
from tests.support.training import TRAIN_JOB
from workloads.trainer_torch.config import TrainSettings as TorchSettings

NO_TEAMS = {"modelplane:teams": None}
"""Dev without its teams: these jobs are not queued, and the teams' quota would claim gpu-train's GPUs."""

JOB = {"name": "lm", "framework": "pytorch", "gpusPerReplica": 1, "gpuPool": "gpu-train", "dataset": "lm/manifest.json"}
SERVICE = {"name": "lm", "model": "lm"}


def _issues(training: list[dict[str, Any]] | None = None, inference: list[dict[str, Any]] | None = None) -> list[str]:
    raw = stack_config_with("dev", {**NO_TEAMS, "modelplane:training": {"jobs": training if training is not None else [JOB]},
                                    "modelplane:inference": {"services": inference or [SERVICE]}})
    with pytest.raises(ConfigError) as info:
        parse_config("dev", raw)
    return [str(issue) for issue in info.value.issues]


def _job(**changes: Any) -> list[dict[str, Any]]:
    return [{**JOB, **changes}]


def _service(**changes: Any) -> list[dict[str, Any]]:
    return [{**SERVICE, **changes}]


def test_the_base_entries_are_valid() -> None:
    raw = stack_config_with("dev", {**NO_TEAMS, "modelplane:training": {"jobs": [JOB]},
                                    "modelplane:inference": {"services": [SERVICE]}})
    config = parse_config("dev", raw)
    assert [j.name for j in config.training.jobs] == ["lm"] and [s.name for s in config.inference.services] == ["lm"]


# (description, training jobs, inference services, the whole expected line or its start)
INVALID: list[tuple[str, list[dict[str, Any]] | None, list[dict[str, Any]] | None, str]] = [
    ("job CPU quantity", _job(cpu="four"), None,
     "modelplane:training.jobs[0].cpu: must be a Kubernetes CPU quantity like 4 or 500m (got 'four')"),
    ("job memory quantity", _job(memory="16GB"), None,
     "modelplane:training.jobs[0].memory: must be a Kubernetes memory quantity like 16Gi (Ki, Mi, Gi or Ti) (got '16GB')"),
    ("job GPUs without a pool", _job(gpuPool=None), None,
     "modelplane:training.jobs[0].gpuPool: is required when GPUs are requested (got gpusPerReplica=1); name a gpuPools entry"),
    ("job pool without GPUs", _job(gpusPerReplica=0), None,
     "modelplane:training.jobs[0].gpuPool: has no effect without GPUs; set gpusPerReplica or remove gpuPool (got 'gpu-train')"),
    ("job image on latest", _job(image="ghcr.io/modelplane/trainer-torch:latest"), None,
     "modelplane:training.jobs[0].image: must be pinned to a tag or digest, never latest or untagged "
     "(got 'ghcr.io/modelplane/trainer-torch:latest')"),
    ("job image untagged", _job(image="ghcr.io/modelplane/trainer-torch"), None,
     "modelplane:training.jobs[0].image: must be pinned to a tag or digest"),
    ("job shm size", _job(shmSize="lots"), None,
     "modelplane:training.jobs[0].shmSize: must be a Kubernetes memory quantity like 8Gi (Ki, Mi, Gi or Ti) (got 'lots')"),
    ("job repeats a platform flag", _job(args=["--model", "small", "--checkpoints=s3://x/"]), None,
     "modelplane:training.jobs[0].args[2]: --checkpoints is set by the platform; remove it"),
    ("job repeats a TF backup flag", _job(framework="tensorflow", args=["--backup-uri", "s3://x/"]), None,
     "modelplane:training.jobs[0].args[0]: --backup-uri is set by the platform; remove it"),
    ("job with no replicas", _job(replicas=0), None,
     "modelplane:training.jobs[0].replicas: Input should be greater than or equal to 1 (got 0)"),
    ("job framework", _job(framework="jax"), None,
     "modelplane:training.jobs[0].framework: Input should be 'pytorch' or 'tensorflow' (got 'jax')"),
    ("job GPU pool that does not exist", _job(gpuPool="gpu-nope"), None,
     "modelplane:training.jobs[0].gpuPool: no gpuPools entry named 'gpu-nope' (gpuPools: gpu-infer, gpu-train)"),
    ("two jobs of one name", [JOB, JOB], None,
     "modelplane:training.jobs[1].name: duplicate name 'lm' (also jobs[0])"),
    ("job that cannot fit its pool's smallest GPU", _job(model="7b", microBatch=4), None,
     "modelplane:training.jobs[0].model: job 'lm' does not fit: '7b' needs an estimated 181.42 GiB per rank (params 24.04, "
     "grads 24.04, optimizer 48.09, activations 32.24, buffers 36.06, overhead 16.95) with ddp over 1 rank(s), "
     "micro-batch 4 x 2048 tokens, bf16, activation checkpointing none; g5 (A10G 24 GB), the smallest GPU of "
     "gpuPools 'gpu-train', has 22.49 GiB. To fit: shard the model states with parallel fsdp; or recompute "
     "activations with activationCheckpointing selective or full; or lower microBatch (got 4; "),
    ("fsdp job that still cannot fit", _job(model="1b", replicas=2, microBatch=32), None,
     "modelplane:training.jobs[0].model: job 'lm' does not fit: '1b' needs an estimated "),
    ("trainer flag in args that has a field", _job(args=["--micro-batch", "4"]), None,
     "modelplane:training.jobs[0].args[0]: --micro-batch has its own field; set microBatch: 4 instead of passing it "
     "in args"),
    ("trainer field on a TF job", _job(framework="tensorflow", gpusPerReplica=0, gpuPool=None, model="small"), None,
     "modelplane:training.jobs[0].model: applies to the PyTorch trainer only (framework tensorflow, got 'small'); "
     "remove it"),
    ("unknown preset", _job(model="huge"), None,
     "modelplane:training.jobs[0].model: must be one of tiny, mini, small, medium, large, 1b, 7b (got 'huge')"),
    ("sequence longer than the preset", _job(model="tiny", seqLen=512), None,
     "modelplane:training.jobs[0].seqLen: must be at most the 'tiny' preset's max_seq_len 256 (got 512)"),
    ("service replicas out of order", None, _service(minReplicas=5, maxReplicas=2),
     "modelplane:inference.services[0].maxReplicas: must be >= minReplicas (got 2 < 5)"),
    ("service with no replicas", None, _service(minReplicas=0),
     "modelplane:inference.services[0].minReplicas: Input should be greater than or equal to 1 (got 0)"),
    ("canary weight without an image", None, _service(canaryWeight=20),
     "modelplane:inference.services[0].canaryImage: is required when canaryWeight > 0 (got weight 20)"),
    ("canary weight above 100", None, _service(canaryWeight=120, canaryImage="ghcr.io/modelplane/serve:0.2.0"),
     "modelplane:inference.services[0].canaryWeight: Input should be less than or equal to 100 (got 120)"),
    ("canary image on latest", None, _service(canaryWeight=10, canaryImage="ghcr.io/modelplane/serve:latest"),
     "modelplane:inference.services[0].canaryImage: must be pinned to a tag or digest"),
    ("service image untagged", None, _service(image="ghcr.io/modelplane/serve"),
     "modelplane:inference.services[0].image: must be pinned to a tag or digest"),
    ("service GPUs without a pool", None, _service(gpus=1),
     "modelplane:inference.services[0].gpuPool: is required when GPUs are requested (got gpus=1)"),
    ("GPUs on TF Serving", None, _service(runtime="tf-serving", gpus=1, gpuPool="gpu-infer"),
     "modelplane:inference.services[0].gpus: must be 0 with runtime tf-serving (got 1): the pinned TF Serving image "
     "is the CPU build; use 0 or runtime modelplane-serve"),
    ("service memory quantity", None, _service(memory="8G"),
     "modelplane:inference.services[0].memory: must be a Kubernetes memory quantity like 16Gi (Ki, Mi, Gi or Ti) (got '8G')"),
]


@pytest.mark.parametrize(("training", "inference", "expected"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_invalid_entry_is_reported_at_its_key_path(
    training: list[dict[str, Any]] | None, inference: list[dict[str, Any]] | None, expected: str
) -> None:
    issues = _issues(training, inference)
    assert any(issue.startswith(expected) for issue in issues), "\n".join(issues)


def test_jobs_are_sized_against_the_smallest_gpu_the_pool_admits() -> None:
    pools = [{"name": "gpu-train", "instanceTypes": ["p5.48xlarge", "g6e.12xlarge"], "gpuLimit": 8}]
    raw = stack_config_with("dev", {**NO_TEAMS, "modelplane:gpuPools": pools})
    raw["modelplane:training"] = {"jobs": _job(model="1b", microBatch=8)}
    raw["modelplane:inference"] = {"services": _service()}
    with pytest.raises(ConfigError) as info:
        parse_config("dev", raw)
    assert "g6e (L40S 48 GB), the smallest GPU of gpuPools 'gpu-train', has 44.99 GiB" in str(info.value)
    raw["modelplane:gpuPools"] = [{**pools[0], "instanceTypes": ["p5.48xlarge"]}]
    assert [job.model for job in parse_config("dev", raw).training.jobs] == ["1b"]


def test_a_pool_of_an_unknown_gpu_family_is_rejected_once_at_the_pool() -> None:
    raw = stack_config_with("dev", {**NO_TEAMS, "modelplane:gpuPools": [{"name": "gpu-train", "instanceFamilies": ["p5x"],
                                                             "gpuLimit": 8}]})
    raw["modelplane:training"] = {"jobs": [JOB]}
    raw["modelplane:inference"] = {"services": _service()}
    with pytest.raises(ConfigError) as info:
        parse_config("dev", raw)
    assert [str(i) for i in info.value.issues] == [
        "modelplane:gpuPools[0].instanceFamilies[0]: must be an EC2 instance family with NVIDIA GPUs (got 'p5x'); "
        "did you mean 'p5'? GPU families: g4dn, g5, g6, g6e, g7, g7e, gr6, p4d, p4de, p5, p5e, p5en, p6-b200, "
        "p6-b300 (infra/config/instances.yaml)"]


def test_every_trainer_field_problem_is_reported_not_just_the_first() -> None:
    issues = _issues(_job(model="huge", seqLen=4096))
    assert "modelplane:training.jobs[0].model: must be one of tiny, mini, small, medium, large, 1b, 7b (got 'huge')" \
        in issues
    assert "modelplane:training.jobs[0].seqLen: must be at most the longest preset's max_seq_len 2048 (got 4096)" \
        in issues


def test_vocab_size_is_rendered_as_the_trainer_flag() -> None:
    graph = render_variant("dev", {**NO_TEAMS, "modelplane:training": {"jobs": _job(model="small", vocabSize=50304)},
                                   "modelplane:inference": {"services": [SERVICE]}})
    (job,) = [r.inputs for r in graph.of_type(TRAIN_JOB) if r.inputs["metadata"]["name"] == "lm"]
    args = job["spec"]["trainer"]["args"]
    assert args[args.index("--model"):args.index("--model") + 4] == ["--model", "small", "--vocab-size", "50304"]
    assert TorchSettings.parse(args, {}).preset.vocab_size == 50304


def test_the_fit_check_counts_the_vocab_size_embedding_and_logits() -> None:
    job = {"model": "small", "microBatch": 24}
    raw = stack_config_with("dev", {**NO_TEAMS, "modelplane:training": {"jobs": _job(**job)},
                                    "modelplane:inference": {"services": [SERVICE]}})
    parse_config("dev", raw)  # fits with the preset's 320 rows
    issues = _issues(_job(**job, vocabSize=65536))
    assert any(issue.startswith("modelplane:training.jobs[0].model: job 'lm' does not fit: 'small' with vocabSize "
                                "65536 needs an estimated ") for issue in issues), issues


RATE_LIMITED = {**SERVICE, "runtime": "vllm", "memory": "16Gi"}
"""A CPU vLLM service: its gateway enforces the per-key rate limit."""


@pytest.mark.parametrize(("changes", "expected"), [
    ({"rateLimitRps": -1}, "modelplane:inference.services[0].rateLimitRps: Input should be greater than or equal to 0 "
                           "(got -1)"),
    ({"rateLimitRps": 5, "rateLimitBurst": 0},
     "modelplane:inference.services[0].rateLimitBurst: Input should be greater than or equal to 1 (got 0)"),
    ({"rateLimitBurst": 40}, "modelplane:inference.services[0].rateLimitBurst: has no effect while rateLimitRps is 0, "
                             "the limit off (got 40); set rateLimitRps or remove rateLimitBurst"),
    ({"runtime": "modelplane-serve", "rateLimitRps": 5},
     "modelplane:inference.services[0].rateLimitRps: applies to runtimes vllm and recommend only, whose gateway "
     "enforces it (runtime modelplane-serve); remove it"),
], ids=["negative rate", "empty bucket", "burst without a rate", "no gateway"])
def test_rate_limit_problems_name_the_key_value_and_fix(changes: dict[str, Any], expected: str) -> None:
    assert expected in _issues(inference=[{**RATE_LIMITED, **changes}])


def test_the_rate_limit_is_off_by_default_and_its_bucket_defaults_to_two_seconds() -> None:
    def parsed(**changes: Any) -> tuple[float, int]:
        raw = stack_config_with("dev", {**NO_TEAMS, "modelplane:training": {"jobs": [JOB]},
                                        "modelplane:inference": {"services": [{**RATE_LIMITED, **changes}]}})
        return parse_config("dev", raw).inference.services[0].rate_limit()

    assert parsed()[0] == 0
    assert [parsed(rateLimitRps=50), parsed(rateLimitRps=0.2), parsed(rateLimitRps=50, rateLimitBurst=7)] == [
        (50, 100), (0.2, 1), (50, 7)]
