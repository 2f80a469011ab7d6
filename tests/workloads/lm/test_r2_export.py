"""Re-exports next to other exports, and what transformers and vLLM read from the export's config and tokenizer."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest
import torch
from transformers import AutoConfig, AutoTokenizer, GenerationConfig

from workloads.common import s3
from workloads.common.uri import S3Uri
from workloads.lm.export import ExportError, load_export, save_export, write_manifest
from workloads.lm.hf_tokenizer import write_tokenizer
from workloads.lm.layout import MANIFEST_FILE, WEIGHTS_FILE
from workloads.lm.model import GPT
from workloads.lm.presets import PRESETS
from workloads.lm.tokenizer import ByteTokenizer
from workloads.serve.loader import load_backend
from workloads.serve.settings import ServeSettings
from workloads.trainer_torch.exporting import upload_export


def tiny(seed: int) -> GPT:
    """An untrained tiny model; different seeds give different weights."""
    torch.manual_seed(seed)
    return GPT(PRESETS["tiny"]).eval()


@pytest.mark.usefixtures("s3")
def test_an_export_leaves_the_exports_in_its_subfolders_alone(tmp_path: Path) -> None:
    # `--export s3://b/models/gpt` next to `models/gpt/1/...`: a reader looks at the export's own folder only, so
    # nothing in a subfolder can shadow the new weights, and deleting it would destroy other models.
    boto3.client("s3").create_bucket(Bucket="nested")
    parent, child = S3Uri("nested", "models/gpt"), S3Uri("nested", "models/gpt/1")
    upload_export(tiny(1), child, {"step": 1})
    child_keys = s3.list_keys(S3Uri("nested", "models/gpt/1/"))
    upload_export(tiny(2), parent, {"step": 2})
    assert s3.list_keys(S3Uri("nested", "models/gpt/1/")) == child_keys
    s3.download_dir(child, tmp_path / "child")
    assert load_export(tmp_path / "child")[2]["modelplane_meta"] == {"step": 1}
    s3.download_dir(parent, tmp_path / "parent")
    assert load_export(tmp_path / "parent")[2]["modelplane_meta"] == {"step": 2}


@pytest.mark.usefixtures("s3")
def test_a_re_export_still_removes_the_old_files_of_its_own_folder(tmp_path: Path) -> None:
    boto3.client("s3").create_bucket(Bucket="stale")
    uri = S3Uri("stale", "models/lm")
    s3.put_bytes(uri.join("model-00001-of-00002.safetensors"), b"old shard")
    s3.put_bytes(uri.join("notes.txt"), b"old file")
    upload_export(tiny(1), uri, {})
    names = {key.removeprefix("models/lm/") for key in s3.list_keys(S3Uri("stale", "models/lm/"))}
    assert names == {*json.loads(s3.get_bytes(uri.join(MANIFEST_FILE)))["files"], MANIFEST_FILE}


class CrashError(Exception):
    """The trainer dying mid-upload."""


@pytest.mark.usefixtures("s3")
@pytest.mark.parametrize("crash_at", [WEIGHTS_FILE, MANIFEST_FILE])
def test_a_re_export_that_dies_mid_upload_is_never_served(crash_at: str, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    boto3.client("s3").create_bucket(Bucket=f"crash-{crash_at.replace('.', '-')}")
    uri = S3Uri(f"crash-{crash_at.replace('.', '-')}", "models/lm")
    upload_export(tiny(1), uri, {"step": 1})
    upload = s3.upload_file

    def dying_upload(path: Path, target: S3Uri, client: object = None) -> None:
        if path.name == crash_at:
            raise CrashError(crash_at)
        upload(path, target, client)

    monkeypatch.setattr(s3, "upload_file", dying_upload)
    with pytest.raises(CrashError):
        upload_export(tiny(2), uri, {"step": 2})
    monkeypatch.undo()
    # Neither the old export (its manifest went first) nor the half-written new one.
    with pytest.raises(ExportError, match=r"no manifest.json; the export is incomplete"):
        load_backend(ServeSettings.parse(["--model-uri", str(uri)], {}))
    s3.download_dir(uri, tmp_path / "half")
    with pytest.raises(ExportError, match=r"no manifest.json"):
        load_export(tmp_path / "half")


def test_a_local_export_over_an_old_one_loads(tmp_path: Path) -> None:
    save_export(tiny(1), tmp_path, max_shard_bytes=64 * 1024)
    save_export(tiny(2), tmp_path)
    loaded = load_export(tmp_path)[0]
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in tiny(2).state_dict().items())


def test_every_file_of_the_export_names_the_same_special_ids(tmp_path: Path) -> None:
    ours = ByteTokenizer(bos_id=300, eos_id=301, pad_id=302)
    save_export(tiny(1), tmp_path, tokenizer=ours)
    theirs, generation = AutoTokenizer.from_pretrained(tmp_path), GenerationConfig.from_pretrained(tmp_path)
    config = AutoConfig.from_pretrained(tmp_path)
    expected = (ours.bos_id, ours.eos_id, ours.pad_id)
    assert (theirs.bos_token_id, theirs.eos_token_id, theirs.pad_token_id) == expected
    assert (generation.bos_token_id, generation.eos_token_id, generation.pad_token_id) == expected
    assert (config.bos_token_id, config.eos_token_id, config.pad_token_id) == expected
    assert load_export(tmp_path)[1] == ours
    assert theirs("hi")["input_ids"] == ours.encode("hi", bos=True)
    assert config.n_positions == theirs.model_max_length == PRESETS["tiny"].max_seq_len


def test_special_ids_beyond_the_models_vocabulary_are_refused_on_export_and_on_load(tmp_path: Path) -> None:
    wide = ByteTokenizer(bos_id=400, eos_id=401, pad_id=402)  # the tiny preset embeds 320 ids
    with pytest.raises(ValueError, match=r"has ids up to 402, beyond the model's vocab_size 320"):
        save_export(tiny(1), tmp_path / "refused", tokenizer=wide)
    files = save_export(tiny(1), tmp_path)
    write_tokenizer(wide, tmp_path, max_length=PRESETS["tiny"].max_seq_len)  # a hand-edited export
    write_manifest(tmp_path, [name for name in files if name != MANIFEST_FILE])
    # Loading it would serve a model whose every prompt starts with an id it has no embedding for.
    with pytest.raises(ExportError, match=r"tokenizer.json: special ids up to 402 .* vocab_size is 320"):
        load_export(tmp_path)
