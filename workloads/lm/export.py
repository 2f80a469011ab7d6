"""The export the trainer writes and the server loads: a Hugging Face `GPT2LMHeadModel` folder.

An export is a folder (local or under an S3 prefix) that transformers and vLLM load as it is:
- `config.json`: the GPT-2 config (`workloads.lm.hf`), plus `modelplane_meta` (step, tokens, data...);
- `model.safetensors`, or numbered shards and `model.safetensors.index.json` past 2 GiB;
- `generation_config.json`, `tokenizer.json` and `tokenizer_config.json` (`workloads.lm.hf_tokenizer`): our byte
  tokenizer, or the Hugging Face tokenizer the data was prepared with, unchanged (then only vLLM serves it);
- `manifest.json`: sha256 and size of every other file. It is written last, so an export
  without a manifest is incomplete and is never loaded.

`load_export` also reads the private `modelplane-lm/v1` exports written before this layout, so
models already in S3 keep serving; nothing writes that format any more.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

import torch
from safetensors.torch import load_model

from workloads.lm import hf
from workloads.lm.hf_tokenizer import ExportTokenizer, read_byte_tokenizer, write_tokenizer
from workloads.lm.layout import (
    CONFIG_FILE,
    GENERATION_CONFIG_FILE,
    LEGACY_FORMAT,
    MANIFEST_FILE,
    TOKENIZER_FILE,
    WEIGHTS_FILE,
)
from workloads.lm.manifest import WEIGHT_FILES_GLOB, ExportError, verify_manifest, write_manifest
from workloads.lm.model import GPT
from workloads.lm.presets import GPTConfig
from workloads.lm.tokenizer import ByteTokenizer

META_KEY: Final = "modelplane_meta"
"""config.json key of the training facts (step, tokens, data, val_loss); transformers keeps it as an attribute."""


def _write_json(folder: Path, name: str, data: dict[str, Any]) -> str:
    (folder / name).write_text(json.dumps(data, indent=2, sort_keys=True))
    return name


def save_export(model: GPT, folder: Path, *, tokenizer: ExportTokenizer | None = None,
                meta: dict[str, Any] | None = None, max_shard_bytes: int = hf.MAX_SHARD_BYTES) -> list[str]:
    """Write `model` as a Hugging Face folder into `folder`, the manifest last; returns every file name.

    Over an earlier export, its manifest goes first (so no reader trusts it while files change) and then its
    weight files, which would otherwise shadow the new ones (`verify_manifest` refuses them).
    """
    tokenizer = tokenizer or ByteTokenizer()
    if tokenizer.vocab_size > model.config.vocab_size:
        raise ValueError(f"tokenizer {tokenizer.to_dict()} has ids up to {tokenizer.vocab_size - 1}, beyond the "
                         f"model's vocab_size {model.config.vocab_size}")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MANIFEST_FILE).unlink(missing_ok=True)
    for stale in folder.glob(WEIGHT_FILES_GLOB):
        stale.unlink()
    dtype = next(model.parameters()).dtype
    files = hf.save_weights(hf.to_hf(model.state_dict()), folder, max_shard_bytes=max_shard_bytes)
    files.append(_write_json(folder, CONFIG_FILE, hf.hf_config(model.config, tokenizer, dtype) | {META_KEY: meta or {}}))
    files.append(_write_json(folder, GENERATION_CONFIG_FILE, hf.generation_config(tokenizer)))
    files += write_tokenizer(tokenizer, folder, max_length=model.config.max_seq_len)
    write_manifest(folder, files)
    return [*files, MANIFEST_FILE]


def load_export(folder: Path, *, device: torch.device | str = "cpu") -> tuple[GPT, ByteTokenizer, dict[str, Any]]:
    """Verify checksums, then build the model in eval mode. Returns (model, tokenizer, config.json)."""
    verify_manifest(folder)
    config: dict[str, Any] = json.loads((folder / CONFIG_FILE).read_text())
    if config.get("format") == LEGACY_FORMAT:
        try:
            model = GPT(GPTConfig.from_dict(config["model"]))
            tokenizer = ByteTokenizer.from_dict(config["tokenizer"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ExportError(f"{folder / CONFIG_FILE}: not a valid {LEGACY_FORMAT} config ({exc!r})") from exc
        load_model(model, str(folder / WEIGHTS_FILE), device=str(device))
        return model.to(device).eval(), tokenizer, config
    try:
        model = GPT(hf.gpt_config(config))
    except (KeyError, ValueError) as exc:
        raise ExportError(f"{folder / CONFIG_FILE}: not an export our GPT can serve ({exc!r})") from exc
    try:
        tokenizer = read_byte_tokenizer(folder)
    except Exception as exc:  # tokenizers raises a bare Exception for a malformed file
        raise ExportError(f"{folder / TOKENIZER_FILE}: not a tokenizer our server can use ({exc})") from exc
    if tokenizer.vocab_size > model.config.vocab_size:
        raise ExportError(f"{folder / TOKENIZER_FILE}: special ids up to {tokenizer.vocab_size - 1} "
                          f"({tokenizer.to_dict()}), but {CONFIG_FILE} vocab_size is {model.config.vocab_size}: "
                          "every id must have an embedding row; export the model with the tokenizer it was trained on")
    model.load_state_dict(hf.from_hf(hf.load_weights(folder, device=str(device))))
    return model.to(device).eval(), tokenizer, config
