"""Flag and TF_CONFIG validation: one test per message, plus the defaults and cluster roles."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from workloads.common.settings import SettingsError
from workloads.common.uri import S3Uri
from workloads.common.vocab import COLLECTIVE_TIMEOUT_FLAG, DATA_FLAG, EXPORT_FLAG, METRICS_PORT_FLAG
from workloads.trainer_tf.config import TrainSettings, check_batch_size, parse_args, parse_tf_config

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
    with pytest.raises(SettingsError, match=(
            r"--data \(MODELPLANE_TF_TRAIN_DATA\): "
            r"expected 'digits' or an s3://BUCKET/PREFIX .*\(got 'mnist'\)")):
        parse_args([*REQUIRED, "--data", "mnist"])


def test_data_uri_without_bucket_names_the_data_flag() -> None:
    with pytest.raises(SettingsError, match=(
            r"--data \(MODELPLANE_TF_TRAIN_DATA\): "
            r"the S3 URI has no bucket \(got 's3:///records'\)")):
        parse_args([*REQUIRED, "--data", "s3:///records"])


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--epochs", "0", "--epochs (MODELPLANE_TF_TRAIN_EPOCHS): Input should be greater than or equal to 1 (got '0')"),
        ("--batch-size", "0", "--batch-size (MODELPLANE_TF_TRAIN_BATCH_SIZE): Input should be greater than or equal to 1 "
                                "(got '0')"),
        ("--lr", "0", "--lr (MODELPLANE_TF_TRAIN_LR): Input should be greater than 0 (got '0')"),
        ("--metrics-port", "70000", "--metrics-port (MODELPLANE_TF_TRAIN_METRICS_PORT): Input should be less than or equal "
                                "to 65535 (got '70000')"),
    ],
)
def test_out_of_range_numbers_name_their_flag(flag: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        parse_args([*REQUIRED, flag, value])


def test_export_must_be_an_s3_uri() -> None:
    with pytest.raises(SettingsError, match=(
            r"--export \(MODELPLANE_TF_TRAIN_EXPORT\): "
            r"expected an s3://BUCKET/PREFIX URI \(got '/models/digits'\)")):
        parse_args(["--backup-dir", "/tmp/b", "--export", "/models/digits"])


def test_export_needs_a_model_name() -> None:
    with pytest.raises(SettingsError, match=(
            r"--export \(MODELPLANE_TF_TRAIN_EXPORT\): "
            r"expected s3://BUCKET/models/NAME/ with a model NAME")):
        parse_args(["--backup-dir", "/tmp/b", "--export", "s3://bucket/"])


def test_export_model_name_must_not_look_like_a_version() -> None:
    with pytest.raises(SettingsError, match=r"--export \(MODELPLANE_TF_TRAIN_EXPORT\): the model NAME must not be a number"):
        parse_args(["--backup-dir", "/tmp/b", "--export", "s3://bucket/models/7/"])


def test_settings_come_from_modelplane_tf_train_env_under_flags() -> None:
    environ = {"MODELPLANE_TF_TRAIN_BACKUP_DIR": "/tmp/env-backup", "MODELPLANE_TF_TRAIN_EXPORT": "s3://b/models/env/",
               "MODELPLANE_TF_TRAIN_EPOCHS": "3"}
    config = parse_args(["--epochs", "5"], environ=environ)
    assert (config.backup_dir, config.model_name, config.epochs) == (Path("/tmp/env-backup"), "env", 5)


def test_platform_flags_are_the_vocabulary_flags() -> None:
    flags = {action.option_strings[0] for action in TrainSettings.build_parser()._actions if action.option_strings}
    assert {DATA_FLAG, EXPORT_FLAG, METRICS_PORT_FLAG, COLLECTIVE_TIMEOUT_FLAG} <= flags


def test_collective_timeout_defaults_to_half_an_hour_and_must_be_positive() -> None:
    assert parse_args(REQUIRED).collective_timeout == 1800
    assert parse_args([*REQUIRED, COLLECTIVE_TIMEOUT_FLAG, "30"]).collective_timeout == 30
    with pytest.raises(SettingsError, match=r"--collective-timeout \(MODELPLANE_TF_TRAIN_COLLECTIVE_TIMEOUT\): "
                                            r"Input should be greater than or equal to 1"):
        parse_args([*REQUIRED, COLLECTIVE_TIMEOUT_FLAG, "0"])


def test_backup_uri_must_be_an_s3_uri() -> None:
    with pytest.raises(SettingsError, match=(
            r"--backup-uri \(MODELPLANE_TF_TRAIN_BACKUP_URI\): "
            r"expected an s3://BUCKET/PREFIX URI")):
        parse_args([*REQUIRED, "--backup-uri", "/backups"])


def test_backup_dir_must_not_be_a_file(tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_text("x")
    with pytest.raises(SettingsError, match=r"--backup-dir \(MODELPLANE_TF_TRAIN_BACKUP_DIR\): must be a directory path"):
        parse_args(["--backup-dir", str(path), "--export", "s3://bucket/models/digits/"])


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(SettingsError) as info:
        parse_args(["--backup-dir", "/tmp/b", "--export", "nope", "--epochs", "0", "--lr", "-1"])
    assert [error.split(" ")[0] for error in info.value.errors] == ["--epochs", "--lr", "--export"]


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
    with pytest.raises(SettingsError, match=r"TF_CONFIG: not valid JSON \(Expecting"):
        parse_tf_config('{"cluster": ')


def test_tf_config_must_be_an_object() -> None:
    with pytest.raises(SettingsError, match="TF_CONFIG: expected a JSON object with \"cluster\" and \"task\""):
        parse_tf_config("[1, 2]")


def test_tf_config_without_task_names_the_missing_key() -> None:
    with pytest.raises(SettingsError, match="TF_CONFIG: missing 'task'"):
        parse_tf_config(json.dumps({"cluster": {"worker": ["a:1"]}}))


def test_tf_config_without_cluster_names_the_missing_key() -> None:
    with pytest.raises(SettingsError, match="TF_CONFIG: missing 'cluster'"):
        parse_tf_config(json.dumps({"task": {"type": "worker", "index": 0}}))


def test_tf_config_cluster_must_list_host_ports() -> None:
    with pytest.raises(SettingsError, match=r'TF_CONFIG: cluster\["worker"\] must be a non-empty list of "host:port"'):
        parse_tf_config(_tf_config({"worker": ["no-port"]}, {"type": "worker", "index": 0}))


def test_tf_config_rejects_parameter_servers() -> None:
    with pytest.raises(SettingsError, match="TF_CONFIG: cluster task type 'ps' is not supported"):
        parse_tf_config(_tf_config({"worker": ["a:1"], "ps": ["p:1"]}, {"type": "worker", "index": 0}))


def test_tf_config_task_type_must_be_in_cluster() -> None:
    with pytest.raises(SettingsError, match="TF_CONFIG: task type 'chief' is not in cluster"):
        parse_tf_config(_tf_config({"worker": ["a:1"]}, {"type": "chief", "index": 0}))


def test_tf_config_task_index_out_of_range_is_named() -> None:
    with pytest.raises(SettingsError, match="TF_CONFIG: task index 2 is out of range for 2 'worker' task"):
        parse_tf_config(_tf_config({"worker": ["a:1", "b:2"]}, {"type": "worker", "index": 2}))


def test_tf_config_task_needs_type_and_index() -> None:
    with pytest.raises(SettingsError, match='TF_CONFIG: "task" must be an object with "type" and "index"'):
        parse_tf_config(_tf_config({"worker": ["a:1"]}, {"type": "worker"}))


def test_tf_config_allows_one_chief_at_most() -> None:
    with pytest.raises(SettingsError, match=r'TF_CONFIG: cluster\["chief"\] must have at most one address'):
        parse_tf_config(_tf_config({"chief": ["a:1", "b:1"]}, {"type": "chief", "index": 0}))


def test_batch_smaller_than_the_worker_count_is_rejected() -> None:
    role = parse_tf_config(_tf_config({"worker": ["a:1", "b:2", "c:3"]}, {"type": "worker", "index": 0}))
    with pytest.raises(SettingsError, match=r"--batch-size: must be at least the number of workers in TF_CONFIG \(3\)"):
        check_batch_size(parse_args([*REQUIRED, "--batch-size", "2"]), role)
