"""`modelplane:training`: the group restart bound and TTL of the section, each job's collective timeout, and the
per-job keys that moved to the section (issue 18: a TrainJob cannot set JobSet-level restarts or TTL)."""

from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from infra.config.errors import ConfigError
from infra.config.parse import parse_config
from infra.review.cli import app
from tests.support.graph import stack_config_with

runner = CliRunner()
NO_TEAMS = {"modelplane:teams": None}
"""Dev without its teams: these jobs are not queued."""
JOB = {"name": "lm", "framework": "pytorch", "gpusPerReplica": 1, "gpuPool": "gpu-train", "dataset": "lm/manifest.json"}
RECOMMENDER = {"name": "recommender", "framework": "pytorch", "task": "recommender", "cpu": "2", "memory": "4Gi",
               "dataset": "recommend/interactions/"}


def _raw(training: dict[str, Any]) -> dict[str, Any]:
    return stack_config_with("dev", {**NO_TEAMS, "modelplane:training": training})


def _issues(training: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config("dev", _raw(training))
    return [str(issue) for issue in info.value.issues]


def test_defaults_restart_a_group_three_times_keep_it_a_day_and_time_collectives_out_after_30_minutes() -> None:
    training = parse_config("dev", _raw({"jobs": [JOB]})).training
    assert (training.max_restarts, training.ttl_seconds_after_finished) == (3, 86400)
    assert training.jobs[0].collective_timeout_seconds == 1800


def test_the_section_and_the_job_set_them() -> None:
    training = parse_config("dev", _raw({"jobs": [{**JOB, "collectiveTimeoutSeconds": 60}], "maxRestarts": 0,
                                         "ttlSecondsAfterFinished": 0})).training
    assert (training.max_restarts, training.ttl_seconds_after_finished) == (0, 0)
    assert training.jobs[0].collective_timeout_seconds == 60


INVALID: list[tuple[str, dict[str, Any], str]] = [
    ("restarts above the bound", {"jobs": [JOB], "maxRestarts": 21},
     "modelplane:training.maxRestarts: Input should be less than or equal to 20 (got 21)"),
    ("negative restarts", {"jobs": [JOB], "maxRestarts": -1},
     "modelplane:training.maxRestarts: Input should be greater than or equal to 0 (got -1)"),
    ("negative TTL", {"jobs": [JOB], "ttlSecondsAfterFinished": -5},
     "modelplane:training.ttlSecondsAfterFinished: Input should be greater than or equal to 0 (got -5)"),
    ("TTL past JobSet's int32", {"jobs": [JOB], "ttlSecondsAfterFinished": 2**31},
     "modelplane:training.ttlSecondsAfterFinished: Input should be less than or equal to 2147483647 (got 2147483648)"),
    ("collective timeout under a minute", {"jobs": [{**JOB, "collectiveTimeoutSeconds": 59}]},
     "modelplane:training.jobs[0].collectiveTimeoutSeconds: Input should be greater than or equal to 60 (got 59)"),
    ("collective timeout on the recommender", {"jobs": [{**RECOMMENDER, "collectiveTimeoutSeconds": 600}]},
     "modelplane:training.jobs[0].collectiveTimeoutSeconds: applies to distributed trainers only (task recommender "
     "is one process, got 600); remove it"),
    ("/dev/shm as large as the memory limit", {"jobs": [{**RECOMMENDER, "memory": "2Gi", "shmSize": "2048Mi"}]},
     "modelplane:training.jobs[0].shmSize: 2048Mi is not below memory 2Gi (a memory-backed /dev/shm counts against "
     "the memory limit); set shmSize below memory, e.g. a quarter of it"),
    ("per-job backoffLimit", {"jobs": [{**JOB, "backoffLimit": 2}]},
     "modelplane:training.jobs[0].backoffLimit: has moved to modelplane:training.maxRestarts; set it there and "
     "remove it here"),
    ("per-job TTL", {"jobs": [{**JOB, "ttlSecondsAfterFinished": 60}]},
     "modelplane:training.jobs[0].ttlSecondsAfterFinished: has moved to modelplane:training.ttlSecondsAfterFinished; "
     "set it there and remove it here"),
]


@pytest.mark.parametrize(("training", "expected"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_invalid_training_config_is_reported_at_its_key_path(training: dict[str, Any], expected: str) -> None:
    issues = _issues(training)
    assert expected in issues, "\n".join(issues)


def test_shm_below_memory_passes() -> None:
    (job,) = parse_config("dev", _raw({"jobs": [{**RECOMMENDER, "memory": "2Gi", "shmSize": "2047Mi"}]})).training.jobs
    assert job.shm_size == "2047Mi"


def test_an_unknown_job_key_lists_the_job_keys() -> None:
    (issue,) = _issues({"jobs": [{**JOB, "replica": 2}]})
    assert issue.startswith("modelplane:training.jobs[0].replica: unknown key 'replica'; did you mean 'replicas'? "
                            "Allowed keys: activationCheckpointing, args, collectiveTimeoutSeconds, cpu, ")


def test_render_exits_2_naming_a_moved_key(tmp_path: Path) -> None:
    stacks = tmp_path / "stacks"
    stacks.mkdir()
    (stacks / "Pulumi.bad.yaml").write_text(yaml.safe_dump({"config": _raw({"jobs": [{**JOB, "backoffLimit": 2}]})}))
    out = tmp_path / "out"
    result = runner.invoke(app, ["render", "--stack", "bad", "--out", str(out), "--stacks-dir", str(stacks)])
    assert result.exit_code == 2, result.output
    assert ("modelplane:training.jobs[0].backoffLimit: has moved to modelplane:training.maxRestarts"
            in result.stderr), result.stderr
    assert not out.exists()


def test_shm_defaults_to_a_quarter_of_memory_at_most_8gi() -> None:
    jobs = parse_config("dev", _raw({"jobs": [{**RECOMMENDER, "name": "a", "memory": "4Gi"},
                                              {**RECOMMENDER, "name": "b", "memory": "1000Gi"},
                                              {**RECOMMENDER, "name": "c", "memory": "3000Mi"}]})).training.jobs
    assert [job.shm_limit for job in jobs] == ["1Gi", "8Gi", "750Mi"]
