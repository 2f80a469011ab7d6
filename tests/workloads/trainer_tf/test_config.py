"""Flag and TF_CONFIG validation: one test per message, plus the defaults and cluster roles."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from workloads.common.s3 import S3Uri
from workloads.trainer_tf.config import ConfigError, check_batch_size, parse_args, parse_tf_config

REQUIRED = ["--backup-dir", "/tmp/backup", "--export", "s3://bucket/models/digits/"]


def test_defaults_train_digits_without_s3_backup_or_metrics() -> None:
    config = parse_args(REQUIRED)
    assert config.data == "digits"
    assert (config.epochs, config.batch_size, config.lr, config.seed, config.metrics_port) == (10, 64, 3e-3, 0, 0)
    assert config.backup_dir == Path("/tmp/backup")
    assert config.backup_uri is None
    assert config.export == S3Uri("bucket", "models/digits/")
    assert config.model_name == "digits"


def test_unknown_data_source_names_the_data_flag() -> None:
    with pytest.raises(ConfigError, match=r"--data: expected 'digits' or an s3://BUCKET/PREFIX .*\(got 'mnist'\)"):
        parse_args([*REQUIRED, "--data", "mnist"])


def test_data_uri_without_bucket_names_the_data_flag() -> None:
    with pytest.raises(ConfigError, match="--data: the S3 URI has no bucket"):
        parse_args([*REQUIRED, "--data", "s3:///records"])


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--epochs", "0", "--epochs: must be at least 1 (got 0)"),
        ("--batch-size", "0", "--batch-size: must be at least 1 (got 0)"),
        ("--lr", "0", "--lr: must be greater than 0 (got 0.0)"),
        ("--metrics-port", "70000", "--metrics-port: must be 0 (off) or a TCP port 1..65535 (got 70000)"),
    ],
)
def test_out_of_range_numbers_name_their_flag(flag: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        parse_args([*REQUIRED, flag, value])


def test_export_must_be_an_s3_uri() -> None:
    with pytest.raises(ConfigError, match=r"--export: expected an s3://BUCKET/PREFIX URI \(got '/models/digits'\)"):
        parse_args(["--backup-dir", "/tmp/b", "--export", "/models/digits"])


def test_export_needs_a_model_name() -> None:
    with pytest.raises(ConfigError, match="--export: expected s3://BUCKET/models/NAME/ with a model NAME"):
        parse_args(["--backup-dir", "/tmp/b", "--export", "s3://bucket/"])


def test_export_model_name_must_not_look_like_a_version() -> None:
    with pytest.raises(ConfigError, match="--export: the model NAME must not be a number"):
        parse_args(["--backup-dir", "/tmp/b", "--export", "s3://bucket/models/7/"])


def test_backup_uri_must_be_an_s3_uri() -> None:
    with pytest.raises(ConfigError, match="--backup-uri: expected an s3://BUCKET/PREFIX URI"):
        parse_args([*REQUIRED, "--backup-uri", "/backups"])


def test_backup_dir_must_not_be_a_file(tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_text("x")
    with pytest.raises(ConfigError, match="--backup-dir: must be a directory path"):
        parse_args(["--backup-dir", str(path), "--export", "s3://bucket/models/digits/"])


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        parse_args(["--backup-dir", "/tmp/b", "--export", "nope", "--epochs", "0", "--lr", "-1"])
    assert [part.split(":")[0] for part in str(info.value).split("; ")] == ["--epochs", "--lr", "--export"]


def test_no_tf_config_means_a_single_chief_worker() -> None:
    role = parse_tf_config(None)
    assert (role.num_workers, role.rank, role.is_chief, role.distributed) == (1, 0, True, False)
    assert parse_tf_config("  ") == role


def _tf_config(cluster: object, task: object) -> str:
    return json.dumps({"cluster": cluster, "task": task})


def test_worker_zero_is_chief_without_a_chief_task() -> None:
    cluster = {"worker": ["a:1", "b:2", "c:3"]}
    roles = [parse_tf_config(_tf_config(cluster, {"type": "worker", "index": i})) for i in range(3)]
    assert [(r.rank, r.is_chief, r.num_workers, r.distributed) for r in roles] == [
        (0, True, 3, True), (1, False, 3, True), (2, False, 3, True)
    ]


def test_chief_task_ranks_before_workers() -> None:
    cluster = {"chief": ["c:1"], "worker": ["w:1", "w:2"]}
    chief = parse_tf_config(_tf_config(cluster, {"type": "chief", "index": 0}))
    worker = parse_tf_config(_tf_config(cluster, {"type": "worker", "index": 0}))
    assert (chief.rank, chief.is_chief, chief.num_workers) == (0, True, 3)
    assert (worker.rank, worker.is_chief, worker.task_type) == (1, False, "worker")


def test_malformed_tf_config_json_is_named() -> None:
    with pytest.raises(ConfigError, match=r"TF_CONFIG: not valid JSON \(Expecting"):
        parse_tf_config('{"cluster": ')


def test_tf_config_must_be_an_object() -> None:
    with pytest.raises(ConfigError, match="TF_CONFIG: expected a JSON object with \"cluster\" and \"task\""):
        parse_tf_config("[1, 2]")


def test_tf_config_without_task_names_the_missing_key() -> None:
    with pytest.raises(ConfigError, match="TF_CONFIG: missing 'task'"):
        parse_tf_config(json.dumps({"cluster": {"worker": ["a:1"]}}))


def test_tf_config_without_cluster_names_the_missing_key() -> None:
    with pytest.raises(ConfigError, match="TF_CONFIG: missing 'cluster'"):
        parse_tf_config(json.dumps({"task": {"type": "worker", "index": 0}}))


def test_tf_config_cluster_must_list_host_ports() -> None:
    with pytest.raises(ConfigError, match=r'TF_CONFIG: cluster\["worker"\] must be a non-empty list of "host:port"'):
        parse_tf_config(_tf_config({"worker": ["no-port"]}, {"type": "worker", "index": 0}))


def test_tf_config_rejects_parameter_servers() -> None:
    with pytest.raises(ConfigError, match="TF_CONFIG: cluster task type 'ps' is not supported"):
        parse_tf_config(_tf_config({"worker": ["a:1"], "ps": ["p:1"]}, {"type": "worker", "index": 0}))


def test_tf_config_task_type_must_be_in_cluster() -> None:
    with pytest.raises(ConfigError, match="TF_CONFIG: task type 'chief' is not in cluster"):
        parse_tf_config(_tf_config({"worker": ["a:1"]}, {"type": "chief", "index": 0}))


def test_tf_config_task_index_out_of_range_is_named() -> None:
    with pytest.raises(ConfigError, match="TF_CONFIG: task index 2 is out of range for 2 'worker' task"):
        parse_tf_config(_tf_config({"worker": ["a:1", "b:2"]}, {"type": "worker", "index": 2}))


def test_tf_config_task_needs_type_and_index() -> None:
    with pytest.raises(ConfigError, match='TF_CONFIG: "task" must be an object with "type" and "index"'):
        parse_tf_config(_tf_config({"worker": ["a:1"]}, {"type": "worker"}))


def test_tf_config_allows_one_chief_at_most() -> None:
    with pytest.raises(ConfigError, match=r'TF_CONFIG: cluster\["chief"\] must have at most one address'):
        parse_tf_config(_tf_config({"chief": ["a:1", "b:1"]}, {"type": "chief", "index": 0}))


def test_batch_smaller_than_the_worker_count_is_rejected() -> None:
    role = parse_tf_config(_tf_config({"worker": ["a:1", "b:2", "c:3"]}, {"type": "worker", "index": 0}))
    with pytest.raises(ConfigError, match=r"--batch-size: must be at least the number of workers in TF_CONFIG \(3\)"):
        check_batch_size(parse_args([*REQUIRED, "--batch-size", "2"]), role)
