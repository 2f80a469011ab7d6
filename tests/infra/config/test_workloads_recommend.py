"""The recommender's entries: `training.jobs[].task: recommender` and `inference.services[].runtime: recommend`, each
rule by its message and key path, and the stack-level need for a Redis."""

from typing import Any

import pytest

from infra.config.errors import ConfigError
from infra.config.parse import parse_config
from tests.support.graph import stack_config_with

JOB = {"name": "recommender", "framework": "pytorch", "task": "recommender", "cpu": "2", "memory": "4Gi",
       "dataset": "recommend/interactions/"}
SERVICE = {"name": "recommend", "runtime": "recommend", "model": "recommender"}


NO_CACHE = {"modelplane:cache": {"enabled": False}}


def _raw(stack: str, job: dict[str, Any], service: dict[str, Any], changes: dict[str, Any] | None = None
         ) -> dict[str, Any]:
    return stack_config_with(stack, {"modelplane:training": {"jobs": [job]},
                                     "modelplane:inference": {"services": [service]}, **(changes or {})})


def _issues(job: dict[str, Any] | None = None, service: dict[str, Any] | None = None,
            changes: dict[str, Any] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config("dev", _raw("dev", job or JOB, service or SERVICE, changes))
    return [str(issue) for issue in info.value.issues]


@pytest.mark.parametrize("stack", ["dev", "local"])
def test_the_recommender_entries_are_valid(stack: str) -> None:
    config = parse_config(stack, _raw(stack, JOB, SERVICE))
    assert [(j.name, j.task) for j in config.training.jobs] == [("recommender", "recommender")]
    assert [(s.name, s.runtime, s.model_prefix()) for s in config.inference.services] == [
        ("recommend", "recommend", "recommender/")]


def test_task_defaults_to_lm() -> None:
    lm = {"name": "lm", "framework": "pytorch", "dataset": "lm/manifest.json"}
    assert parse_config("dev", _raw("dev", lm, SERVICE)).training.jobs[0].task == "lm"


INVALID: list[tuple[str, dict[str, Any] | None, dict[str, Any] | None, str]] = [
    ("recommender on several replicas", {**JOB, "replicas": 2}, None,
     "modelplane:training.jobs[0].replicas: must be 1 with task recommender (got 2): its trainer is one process; "
     "set replicas: 1"),
    ("recommender on TensorFlow", {**JOB, "framework": "tensorflow"}, None,
     "modelplane:training.jobs[0].framework: must be pytorch with task recommender (got 'tensorflow'): the "
     "recommender trains with PyTorch; set framework: pytorch"),
    ("recommender with GPUs", {**JOB, "gpusPerReplica": 1, "gpuPool": "gpu-train"}, None,
     "modelplane:training.jobs[0].gpusPerReplica: must be 0 with task recommender (got 1): its trainer runs on CPU; "
     "remove gpusPerReplica and gpuPool"),
    ("recommender with an LM preset", {**JOB, "model": "small"}, None,
     "modelplane:training.jobs[0].model: applies to the LM trainer only (task recommender, got 'small'); remove it"),
    ("recommender with a sequence length", {**JOB, "seqLen": 128}, None,
     "modelplane:training.jobs[0].seqLen: applies to the LM trainer only (task recommender, got 128); remove it"),
    ("recommender with a micro-batch", {**JOB, "microBatch": 8}, None,
     "modelplane:training.jobs[0].microBatch: applies to the LM trainer only (task recommender, got 8); remove it"),
    ("recommender with a parallelism", {**JOB, "parallel": "fsdp"}, None,
     "modelplane:training.jobs[0].parallel: applies to the LM trainer only (task recommender, got 'fsdp'); "
     "remove it"),
    ("recommender with activation checkpointing", {**JOB, "activationCheckpointing": "full"}, None,
     "modelplane:training.jobs[0].activationCheckpointing: applies to the LM trainer only (task recommender, got "
     "'full'); remove it"),
    ("recommender repeating a platform flag", {**JOB, "args": ["--export", "s3://x/"]}, None,
     "modelplane:training.jobs[0].args[0]: --export is set by the platform; remove it"),
    ("unknown task", {**JOB, "task": "ranker"}, None,
     "modelplane:training.jobs[0].task: Input should be 'lm' or 'recommender' (got 'ranker')"),
    ("recommend service with GPUs", None, {**SERVICE, "gpus": 1, "gpuPool": "gpu-infer"},
     "modelplane:inference.services[0].gpus: must be 0 with runtime recommend (got 1): the recommendation service "
     "scores on CPU; set gpus: 0"),
    ("recommend service asking for the response cache", None, {**SERVICE, "cache": True},
     "modelplane:inference.services[0].cache: must be false with runtime recommend (got true): a recommendation "
     "changes with every feature update, so the gateway never caches it; remove cache"),
    ("recommend service with a vllm block", None, {**SERVICE, "vllm": {"preset": "mini"}},
     "modelplane:inference.services[0].vllm: applies to runtime vllm only (runtime recommend); remove it"),
]


@pytest.mark.parametrize(("job", "service", "expected"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_invalid_entry_is_reported_at_its_key_path(job: dict[str, Any] | None, service: dict[str, Any] | None,
                                                   expected: str) -> None:
    issues = _issues(job, service)
    assert expected in issues, "\n".join(issues)


def test_every_lm_field_on_a_recommender_is_reported_at_once() -> None:
    issues = _issues({**JOB, "model": "small", "seqLen": 128, "replicas": 3})
    assert {issue.split(":")[1] for issue in issues} == {
        "training.jobs[0].model", "training.jobs[0].seqLen", "training.jobs[0].replicas"}


def test_cache_false_is_accepted_on_a_recommend_service() -> None:
    config = parse_config("dev", _raw("dev", JOB, {**SERVICE, "cache": False}))
    assert config.inference.services[0].cache is False


def test_a_recommend_service_needs_the_stacks_redis() -> None:
    issues = _issues(changes=NO_CACHE)
    assert ("modelplane:inference.services[0].runtime: recommend needs the stack's Redis, where the stream processor "
            "keeps the live features, and this stack has none (cache.enabled: false); set modelplane:cache.enabled: "
            "true") in issues


def test_other_runtimes_do_without_the_stacks_redis() -> None:
    raw = _raw("dev", JOB, {"name": "lm", "model": "lm"}, NO_CACHE)
    issues: list[str] = []
    try:
        parse_config("dev", raw)
    except ConfigError as error:  # other sections (the stream processor) may need the Redis; this entry does not
        issues = [str(issue) for issue in error.issues]
    assert not [issue for issue in issues if issue.startswith("modelplane:inference")], issues
