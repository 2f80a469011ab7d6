"""The file layout of an LM export, without torch, so a server can recognise one before importing torch."""

from __future__ import annotations

from typing import Final

FORMAT: Final = "modelplane-lm/v1"
"""The `format` value in an export's config.json."""
CONFIG_FILE: Final = "config.json"
"""Model config and format marker."""
WEIGHTS_FILE: Final = "model.safetensors"
"""The weights."""
MANIFEST_FILE: Final = "manifest.json"
"""Checksums of every other file; written last, so its presence means the export is complete."""
