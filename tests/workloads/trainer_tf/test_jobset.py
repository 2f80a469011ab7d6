"""TF_CONFIG computed from a JobSet pod's labels: the worker addresses, the task, and every bad-env message."""

from __future__ import annotations

import json

import pytest

from workloads.common.settings import SettingsError
from workloads.common.vocab import JOBSET_ENV, TF_WORKER_PORT
from workloads.trainer_tf.config import parse_tf_config
from workloads.trainer_tf.jobset import jobset_tf_config, resolve_tf_config

POD = {"JOBSET_NAME": "digits", "JOBSET_REPLICATED_JOB_NAME": "worker", "JOBSET_REPLICATED_JOB_REPLICAS": "3",
       "JOBSET_JOB_INDEX": "1"}
"""The env of worker 1 of a three-worker JobSet named digits, as the downward API sets it."""


def test_pod_env_names_every_jobset_variable() -> None:
    assert set(POD) == set(JOBSET_ENV)


def test_workers_are_the_jobset_pod_hostnames_and_the_task_is_the_job_index() -> None:
    raw = jobset_tf_config(POD)
    assert raw is not None
    assert json.loads(raw) == {
        "cluster": {"worker": [f"digits-worker-{i}-0.digits:{TF_WORKER_PORT}" for i in range(3)]},
        "task": {"type": "worker", "index": 1},
    }
    role = parse_tf_config(raw)
    assert (role.num_workers, role.rank, role.is_chief, role.distributed) == (3, 1, False, True)


def test_job_index_zero_is_the_chief() -> None:
    role = parse_tf_config(jobset_tf_config({**POD, "JOBSET_JOB_INDEX": "0"}))
    assert (role.rank, role.is_chief) == (0, True)


def test_no_jobset_variable_means_no_cluster() -> None:
    assert jobset_tf_config({"HOSTNAME": "digits-worker-1-0"}) is None
    assert parse_tf_config(resolve_tf_config({})).distributed is False


def test_an_explicit_tf_config_wins_over_the_jobset_variables() -> None:
    explicit = json.dumps({"cluster": {"worker": ["10.0.0.1:2222"]}, "task": {"type": "worker", "index": 0}})
    assert resolve_tf_config({**POD, "TF_CONFIG": explicit}) == explicit
    assert resolve_tf_config({**POD, "TF_CONFIG": " "}) == jobset_tf_config(POD)


def test_partial_jobset_env_names_every_missing_variable_and_its_label() -> None:
    with pytest.raises(SettingsError) as info:
        jobset_tf_config({"JOBSET_NAME": "digits", "JOBSET_REPLICATED_JOB_NAME": "worker", "JOBSET_JOB_INDEX": ""})
    assert info.value.errors == [
        "JOBSET_REPLICATED_JOB_REPLICAS, JOBSET_JOB_INDEX: missing or empty, so TF_CONFIG cannot be computed from "
        "the JobSet pod labels (JOBSET_REPLICATED_JOB_REPLICAS <- 'jobset.sigs.k8s.io/replicatedjob-replicas', "
        "JOBSET_JOB_INDEX <- 'jobset.sigs.k8s.io/job-index'); set every one of JOBSET_NAME, "
        "JOBSET_REPLICATED_JOB_NAME, JOBSET_REPLICATED_JOB_REPLICAS, JOBSET_JOB_INDEX through the downward API, or "
        "set TF_CONFIG itself"]


def test_bad_numbers_are_each_named_with_their_value() -> None:
    with pytest.raises(SettingsError) as info:
        jobset_tf_config({**POD, "JOBSET_REPLICATED_JOB_REPLICAS": "0", "JOBSET_JOB_INDEX": "one"})
    assert info.value.errors == [
        "JOBSET_REPLICATED_JOB_REPLICAS: expected a whole number >= 1 from the pod label "
        "'jobset.sigs.k8s.io/replicatedjob-replicas' (got '0')",
        "JOBSET_JOB_INDEX: expected a whole number >= 0 from the pod label 'jobset.sigs.k8s.io/job-index' "
        "(got 'one')",
    ]


def test_a_job_index_past_the_replicas_is_named() -> None:
    with pytest.raises(SettingsError, match=r"^invalid settings:\n  JOBSET_JOB_INDEX: 3 is out of range for "
                                            r"JOBSET_REPLICATED_JOB_REPLICAS 3 \(expected 0 to 2\)$"):
        jobset_tf_config({**POD, "JOBSET_JOB_INDEX": "3"})
