"""The export format the trainer writes and the server loads.

An export is a folder (local or under an S3 prefix):
- `config.json`: `{"format": "modelplane-lm/v1", "model": GPTConfig, "tokenizer": {...}, "meta": {...}}`
- `model.safetensors`: the weights (tied tensors stored once by `safetensors.torch.save_model`)
- `manifest.json`: sha256 and size of every other file. It is written last, so an export
  without a manifest is incomplete and is never loaded.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_model, save_model

from workloads.common.hashing import sha256_file
from workloads.lm.layout import CONFIG_FILE, FORMAT, MANIFEST_FILE, WEIGHTS_FILE
from workloads.lm.model import GPT
from workloads.lm.presets import GPTConfig
from workloads.lm.tokenizer import ByteTokenizer


class ExportError(RuntimeError):
    """An export is incomplete, corrupt or of an unknown format."""


def write_manifest(folder: Path, files: list[str]) -> None:
    """Write `manifest.json` with the sha256 and size of each of `files` (the commit marker)."""
    entries = {name: {"sha256": sha256_file(folder / name), "bytes": (folder / name).stat().st_size} for name in files}
    (folder / MANIFEST_FILE).write_text(json.dumps({"files": entries}, indent=2, sort_keys=True))


def verify_manifest(folder: Path) -> dict[str, Any]:
    """Check every file against `manifest.json`; raise `ExportError` naming the first bad file."""
    manifest_path = folder / MANIFEST_FILE
    if not manifest_path.is_file():
        raise ExportError(f"{folder}: no {MANIFEST_FILE}; the export is incomplete")
    manifest: dict[str, Any] = json.loads(manifest_path.read_text())
    for name, entry in manifest["files"].items():
        path = folder / name
        if not path.is_file():
            raise ExportError(f"{folder}: {name} is listed in the manifest but missing")
        actual = sha256_file(path)
        if actual != entry["sha256"]:
            raise ExportError(f"{folder}: checksum mismatch for {name} (expected {entry['sha256']}, got {actual})")
    return manifest


def save_export(model: GPT, folder: Path, *, tokenizer: ByteTokenizer | None = None,
                meta: dict[str, Any] | None = None) -> None:
    """Write `model` as an export into `folder` (weights, config, then the manifest)."""
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = tokenizer or ByteTokenizer()
    save_model(model, str(folder / WEIGHTS_FILE))
    config = {"format": FORMAT, "model": model.config.to_dict(), "tokenizer": tokenizer.to_dict(), "meta": meta or {}}
    (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True))
    write_manifest(folder, [WEIGHTS_FILE, CONFIG_FILE])


def load_export(folder: Path, *, device: torch.device | str = "cpu") -> tuple[GPT, ByteTokenizer, dict[str, Any]]:
    """Verify checksums, then build the model in eval mode. Returns (model, tokenizer, config)."""
    verify_manifest(folder)
    config: dict[str, Any] = json.loads((folder / CONFIG_FILE).read_text())
    if config.get("format") != FORMAT:
        raise ExportError(f"{folder}: unknown export format {config.get('format')!r} (expected {FORMAT!r})")
    model = GPT(GPTConfig.from_dict(config["model"]))
    load_model(model, str(folder / WEIGHTS_FILE), device=str(device))
    model.to(device).eval()
    return model, ByteTokenizer.from_dict(config["tokenizer"]), config
