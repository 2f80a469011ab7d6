"""An export's `manifest.json`: the sha256 and size of every other file, written last as its commit marker.

Torch-free, so what only checks an export (the vLLM pods' init container, `workloads.lm.fetch`) loads no torch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

from workloads.common.hashing import sha256_file
from workloads.lm.layout import MANIFEST_FILE

WEIGHT_FILES_GLOB: Final = "model*.safetensors*"
"""Every weight file name of an export: model.safetensors, its numbered shards and their index."""


class ExportError(RuntimeError):
    """An export is incomplete, corrupt or of an unknown format."""


class IncompleteExportError(ExportError):
    """The export is still being written: no manifest.json yet, or a file it lists has not arrived; worth waiting for."""


def write_manifest(folder: Path, files: list[str]) -> None:
    """Write `manifest.json` with the sha256 and size of each of `files` (the commit marker)."""
    entries = {name: {"sha256": sha256_file(folder / name), "bytes": (folder / name).stat().st_size} for name in files}
    (folder / MANIFEST_FILE).write_text(json.dumps({"files": entries}, indent=2, sort_keys=True))


def verify_manifest(folder: Path) -> dict[str, Any]:
    """Check every file against `manifest.json`; raise `ExportError` naming the first bad or unlisted weight file.

    Weight files the manifest does not list are refused too: transformers prefers a stray
    model.safetensors and our loader a stray index, either of which would shadow the listed weights.
    """
    manifest_path = folder / MANIFEST_FILE
    if not manifest_path.is_file():
        raise IncompleteExportError(f"{folder}: no {MANIFEST_FILE}; the export is incomplete")
    manifest: dict[str, Any] = json.loads(manifest_path.read_text())
    stray = sorted(path.name for path in folder.glob(WEIGHT_FILES_GLOB) if path.name not in manifest["files"])
    if stray:
        raise ExportError(f"{folder}: weight files {stray} are not in the manifest (left from an earlier export?); "
                          "re-export into an empty prefix or delete them")
    for name, entry in manifest["files"].items():
        path = folder / name
        if not path.is_file():
            # Still arriving when an uploader without our manifest-last order (aws s3 sync, upload_dir) copies it.
            raise IncompleteExportError(f"{folder}: {name} is listed in the manifest but missing")
        actual = sha256_file(path)
        if actual != entry["sha256"]:
            raise ExportError(f"{folder}: checksum mismatch for {name} (expected {entry['sha256']}, got {actual})")
    return manifest
