"""Bad input fails fast, before TensorFlow is imported and before any training, naming the flag or variable."""

from __future__ import annotations

import json
import os
import sys
import uuid
from pathlib import Path

import pytest

from tests.support.servers import S3Server, free_port
from tests.workloads.trainer_tf.cluster import jobset_env, run_cli, trainer_env
from workloads.common import s3 as s3io
from workloads.common.vocab import COLLECTIVE_TIMEOUT_FLAG
from workloads.trainer_tf.cli import main


@pytest.fixture()
def bucket(s3: S3Server) -> str:
    """A fresh bucket on the test S3 server."""
    name = f"cli-{uuid.uuid4().hex[:10]}"
    s3io.client().create_bucket(Bucket=name)
    return name


def _args(bucket: str, tmp_path: Path, *extra: str) -> list[str]:
    return ["--backup-dir", str(tmp_path / "backup"), "--export", f"s3://{bucket}/models/digits/", *extra]


def _fails_with(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    # Validation happens before the TensorFlow import, so a bad job fails in milliseconds. Other tests in
    # this process may have imported the training module already; hide it so any import by `main` shows.
    with pytest.MonkeyPatch.context() as patch:
        patch.delitem(sys.modules, "workloads.trainer_tf.train", raising=False)
        assert main(argv) == 2
        assert "workloads.trainer_tf.train" not in sys.modules
    captured = capsys.readouterr()
    event = json.loads(captured.out.strip().splitlines()[-1])
    assert event["event"] == "config_error"
    assert captured.err.startswith("error: ")
    assert captured.err.count("error: ") == len(event["errors"])
    return "\n".join(event["errors"])


def test_malformed_tf_config_fails_naming_tf_config(
    bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TF_CONFIG", "{not json")
    assert _fails_with(_args(bucket, tmp_path), capsys).startswith("TF_CONFIG: not valid JSON")


def test_tf_config_task_index_out_of_range_fails(
    bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["127.0.0.1:1"]},
                                                "task": {"type": "worker", "index": 1}}))
    assert "TF_CONFIG: task index 1 is out of range" in _fails_with(_args(bucket, tmp_path), capsys)


def test_jobset_env_without_tf_config_sets_the_cluster(
    bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TF_CONFIG", "")
    for var, value in jobset_env(replicas=3, index=1).items():
        monkeypatch.setenv(var, value)
    # Three workers from the JobSet's replicas: a global batch of 2 cannot feed them all.
    error = _fails_with(_args(bucket, tmp_path, "--batch-size", "2"), capsys)
    assert error == "--batch-size: must be at least the number of workers in TF_CONFIG (3) so every worker gets " \
                    "examples (got 2)"
    assert json.loads(os.environ["TF_CONFIG"])["cluster"]["worker"][2] == "digits-worker-2-0.digits:2222"


def test_partial_jobset_env_fails_naming_the_missing_variables(
    bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TF_CONFIG", "")
    monkeypatch.setenv("JOBSET_NAME", "digits")
    error = _fails_with(_args(bucket, tmp_path), capsys)
    assert error.startswith("JOBSET_REPLICATED_JOB_NAME, JOBSET_REPLICATED_JOB_REPLICAS, JOBSET_JOB_INDEX: missing "
                            "or empty, so TF_CONFIG cannot be computed")


def test_unknown_data_source_fails_naming_data(
    bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _fails_with(_args(bucket, tmp_path, "--data", "imagenet"), capsys).startswith(
        "--data (MODELPLANE_TF_TRAIN_DATA): expected 'digits'")


def test_s3_data_without_shards_fails_naming_data(
    bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    error = _fails_with(_args(bucket, tmp_path, "--data", f"s3://{bucket}/empty/"), capsys)
    assert error.startswith(f"--data: no .npz image-record shards under 's3://{bucket}/empty/'")


def test_missing_export_bucket_fails_before_training(
    s3: S3Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    error = _fails_with(["--backup-dir", str(tmp_path), "--export", "s3://no-such-bucket/models/digits/"], capsys)
    assert error.startswith("--export: bucket 'no-such-bucket' does not exist at http://127.0.0.1:")


def test_missing_backup_bucket_fails_naming_backup_uri(
    bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    error = _fails_with(_args(bucket, tmp_path, "--backup-uri", "s3://no-backups/x"), capsys)
    assert error.startswith("--backup-uri: bucket 'no-backups' does not exist")


def test_unreachable_s3_endpoint_fails_naming_export(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    error = _fails_with(["--backup-dir", str(tmp_path), "--export", "s3://models/models/digits/"], capsys)
    assert error.startswith("--export: cannot reach S3 at http://127.0.0.1:")


def test_the_module_exits_non_zero_on_bad_tf_config(s3: S3Server, bucket: str, tmp_path: Path) -> None:
    env = {**trainer_env(s3), "TF_CONFIG": '{"cluster": {"worker": ["127.0.0.1:1"]}}'}
    result = run_cli(_args(bucket, tmp_path), env, timeout=60)
    assert result.returncode == 2
    assert "error: TF_CONFIG: missing 'task'" in result.stderr
    assert json.loads(result.stdout.splitlines()[-1])["event"] == "config_error"


def test_the_module_prints_help_and_exits_zero(s3: S3Server) -> None:
    result = run_cli(["--help"], trainer_env(s3), timeout=60)
    assert result.returncode == 0
    for flag in ("--data", "--epochs", "--batch-size", "--lr", "--backup-dir", "--backup-uri", "--export", "--seed",
                 "--metrics-port", COLLECTIVE_TIMEOUT_FLAG):
        assert flag in result.stdout
