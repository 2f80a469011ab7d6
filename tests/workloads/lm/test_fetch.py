"""`python -m workloads.lm.fetch`: vLLM's pods get an export only when its manifest vouches for every file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
import torch

from workloads.common import s3
from workloads.common.uri import S3Uri
from workloads.lm.export import load_export
from workloads.lm.fetch import main
from workloads.lm.layout import CONFIG_FILE, MANIFEST_FILE, WEIGHTS_FILE
from workloads.lm.model import GPT
from workloads.lm.presets import PRESETS
from workloads.trainer_torch.exporting import upload_export

BUCKET = "fetch-models"


@pytest.fixture()
def export(s3: object, request: pytest.FixtureRequest) -> S3Uri:
    """A complete tiny export under its own prefix, uploaded the way the trainer does (manifest last)."""
    client = boto3.client("s3")
    if BUCKET not in {bucket["Name"] for bucket in client.list_buckets()["Buckets"]}:
        client.create_bucket(Bucket=BUCKET)
    uri = S3Uri(BUCKET, f"lm/{request.node.name}")
    torch.manual_seed(0)
    upload_export(GPT(PRESETS["tiny"]).eval(), uri, {"step": 7})
    return uri


def _listed(uri: S3Uri) -> list[str]:
    return sorted([*json.loads(s3.get_bytes(uri.join(MANIFEST_FILE)))["files"], MANIFEST_FILE])


def test_a_complete_export_is_downloaded_and_loads(export: S3Uri, tmp_path: Path) -> None:
    target = tmp_path / "models" / "chat"
    assert main(["--model-uri", str(export), "--target", str(target)]) == 0
    assert sorted(path.name for path in target.iterdir()) == _listed(export)
    assert load_export(target)[2]["modelplane_meta"] == {"step": 7}


def test_an_export_without_its_manifest_is_refused(export: S3Uri, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    # What a reader sees while the trainer uploads (or after it crashed mid-upload): every file but the manifest.
    boto3.client("s3").delete_object(Bucket=BUCKET, Key=export.join(MANIFEST_FILE).key)
    target = tmp_path / "chat"
    assert main(["--model-uri", str(export), "--target", str(target)]) == 1
    err = capsys.readouterr().err
    assert f"{export}: no {MANIFEST_FILE}: the export is incomplete" in err
    assert "wait for it to finish" in err and "re-run the export" in err
    assert not target.exists()


def test_a_file_changed_after_the_manifest_is_refused_and_nothing_is_left(export: S3Uri, tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    config = json.loads(s3.get_bytes(export.join(CONFIG_FILE)))
    s3.put_bytes(export.join(CONFIG_FILE), json.dumps({**config, "n_layer": 99}).encode())
    target = tmp_path / "chat"
    assert main(["--model-uri", str(export), "--target", str(target)]) == 1
    err = capsys.readouterr().err
    assert str(export) in err and f"checksum mismatch for {CONFIG_FILE}" in err and "re-run the export" in err
    assert not target.exists()


def test_a_listed_file_missing_in_s3_is_refused(export: S3Uri, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    boto3.client("s3").delete_object(Bucket=BUCKET, Key=export.join(WEIGHTS_FILE).key)
    assert main(["--model-uri", str(export), "--target", str(tmp_path / "chat")]) == 1
    assert f"{export}: {WEIGHTS_FILE} is listed in {MANIFEST_FILE} but missing in S3" in capsys.readouterr().err


def test_subfolder_exports_and_stale_local_files_are_not_downloaded(export: S3Uri, tmp_path: Path) -> None:
    # `models/gpt` next to `models/gpt/1/...`; and a restarted init container finds its previous attempt's files.
    s3.put_bytes(export.join("1", WEIGHTS_FILE), b"another export's weights")
    target = tmp_path / "chat"
    target.mkdir()
    (target / "model-00001-of-00002.safetensors").write_bytes(b"left by an earlier attempt")
    assert main(["--model-uri", str(export), "--target", str(target)]) == 0
    assert sorted(path.name for path in target.iterdir()) == _listed(export)


def test_verify_only_passes_a_complete_export_without_downloading(export: S3Uri,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # A subfolder's shard is another export's, not a stray of this one.
    s3.put_bytes(export.join("1", "model-00001-of-00002.safetensors"), b"a subfolder export's shard")

    def no_download(*args: object) -> None:
        raise AssertionError(f"--verify-only downloaded {args[0]}")

    monkeypatch.setattr(s3, "download_file", no_download)
    assert main(["--model-uri", str(export), "--verify-only"]) == 0


def test_verify_only_refuses_an_export_without_its_manifest(export: S3Uri, capsys: pytest.CaptureFixture[str]) -> None:
    boto3.client("s3").delete_object(Bucket=BUCKET, Key=export.join(MANIFEST_FILE).key)
    assert main(["--model-uri", str(export), "--verify-only"]) == 1
    assert f"{export}: no {MANIFEST_FILE}: the export is incomplete" in capsys.readouterr().err


def test_verify_only_refuses_a_file_whose_size_differs(export: S3Uri, capsys: pytest.CaptureFixture[str]) -> None:
    s3.put_bytes(export.join(WEIGHTS_FILE), b"truncated")
    assert main(["--model-uri", str(export), "--verify-only"]) == 1
    err = capsys.readouterr().err
    assert f"{export}: {WEIGHTS_FILE} has 9 bytes in S3" in err and "re-run the export" in err


def test_verify_only_refuses_a_stray_weight_file(export: S3Uri, capsys: pytest.CaptureFixture[str]) -> None:
    s3.put_bytes(export.join("model-00001-of-00002.safetensors"), b"an earlier export's shard")
    assert main(["--model-uri", str(export), "--verify-only"]) == 1
    assert "weight files ['model-00001-of-00002.safetensors'] are not in" in capsys.readouterr().err


def test_a_target_is_required_unless_verify_only(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--model-uri", "s3://b/lm"]) == 2
    assert "--target (MODELPLANE_MODEL_FETCH_TARGET): is required unless --verify-only" in capsys.readouterr().err


def test_the_check_loads_no_torch() -> None:
    # It runs as an init container beside vLLM with a small memory limit: importing torch alone takes ~250 MB.
    code = "import sys, workloads.lm.fetch; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[3], check=False).returncode == 0
