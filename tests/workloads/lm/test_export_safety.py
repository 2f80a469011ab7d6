"""Exports over old ones, the data's tokenizer in the export, and configs or tokenizers we cannot serve."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import boto3
import pytest
import torch

from workloads.common import s3
from workloads.common.uri import S3Uri
from workloads.lm import hf
from workloads.lm.export import ExportError, load_export, save_export, write_manifest
from workloads.lm.layout import LEGACY_FORMAT, MANIFEST_FILE, TOKENIZER_FILE, WEIGHTS_FILE, WEIGHTS_INDEX_FILE
from workloads.lm.model import GPT
from workloads.lm.presets import PRESETS
from workloads.lm.tokenizer import ByteTokenizer
from workloads.trainer_torch.exporting import upload_export


def tiny(seed: int) -> GPT:
    """An untrained tiny model; different seeds give different weights."""
    torch.manual_seed(seed)
    return GPT(PRESETS["tiny"]).eval()


def same_weights(a: GPT, b: GPT) -> bool:
    """Every tensor of the two state dicts is equal."""
    return all(torch.equal(a.state_dict()[k], v) for k, v in b.state_dict().items())


@pytest.mark.usefixtures("s3")
def test_a_single_file_export_over_a_sharded_one_leaves_no_old_shard_or_index(tmp_path: Path) -> None:
    boto3.client("s3").create_bucket(Bucket="re-export")
    uri = S3Uri("re-export", "models/lm")
    old, new = tiny(1), tiny(2)
    sharded = tmp_path / "sharded"
    for name in save_export(old, sharded, max_shard_bytes=64 * 1024):
        s3.upload_file(sharded / name, uri.join(name))
    s3.put_bytes(S3Uri("re-export", "models/lm2/keep.txt"), b"a sibling prefix is not ours")
    upload_export(new, uri, {"step": 2})
    names = sorted(key.removeprefix("models/lm/") for key in s3.list_keys(uri.join("")) if key.startswith("models/lm/"))
    assert names == sorted([*json.loads(s3.get_bytes(uri.join(MANIFEST_FILE)))["files"], MANIFEST_FILE])
    assert WEIGHTS_FILE in names and WEIGHTS_INDEX_FILE not in names
    assert s3.exists(S3Uri("re-export", "models/lm2/keep.txt"))
    s3.download_dir(uri, tmp_path / "download")
    assert same_weights(load_export(tmp_path / "download")[0], new)


def test_weight_files_the_manifest_does_not_list_are_refused(tmp_path: Path) -> None:
    export, other = tmp_path / "export", tmp_path / "other"
    save_export(tiny(1), export, max_shard_bytes=64 * 1024)
    save_export(tiny(2), other)
    shutil.copy(other / WEIGHTS_FILE, export / WEIGHTS_FILE)  # what a reader downloads when old files are left
    with pytest.raises(ExportError, match=r"weight files \['model.safetensors'\] are not in the manifest"):
        load_export(export)


@pytest.mark.usefixtures("s3")
def test_the_export_carries_the_datas_tokenizer(tmp_path: Path) -> None:
    boto3.client("s3").create_bucket(Bucket="tok-export")
    uri = S3Uri("tok-export", "models/lm")
    tokenizer = ByteTokenizer(bos_id=300, eos_id=301, pad_id=302)
    upload_export(tiny(1), uri, {}, tokenizer=tokenizer)
    s3.download_dir(uri, tmp_path)
    _, loaded, config = load_export(tmp_path)
    assert loaded == tokenizer and (config["bos_token_id"], config["eos_token_id"]) == (300, 301)


def test_gpt2s_null_n_inner_means_four_times_n_embd() -> None:
    config = hf.hf_config(PRESETS["tiny"], ByteTokenizer(), torch.float32) | {"n_inner": None}
    assert hf.gpt_config(config) == PRESETS["tiny"]
    with pytest.raises(ValueError, match=r"'n_inner': 100"):
        hf.gpt_config(config | {"n_inner": 100})


def test_a_malformed_legacy_config_is_an_export_error_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"format": LEGACY_FORMAT, "tokenizer": {"type": "byte"}}))
    write_manifest(tmp_path, ["config.json"])
    with pytest.raises(ExportError, match=r"config.json: not a valid modelplane-lm/v1 config \(KeyError\('model'\)"):
        load_export(tmp_path)


def test_a_malformed_tokenizer_json_is_an_export_error_naming_the_file(tmp_path: Path) -> None:
    files = save_export(tiny(1), tmp_path)
    (tmp_path / TOKENIZER_FILE).write_text('{"model": "not a tokenizer"}')
    write_manifest(tmp_path, [name for name in files if name != MANIFEST_FILE])
    with pytest.raises(ExportError, match=r"tokenizer.json: not a tokenizer our server can use"):
        load_export(tmp_path)
