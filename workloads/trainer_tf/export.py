"""Publish an exported SavedModel as the next numeric version under the TF Serving model base path.

TF Serving watches `s3://BUCKET/models/NAME/` and loads the highest numeric child folder
(https://www.tensorflow.org/tfx/serving/serving_config). The accuracy report sits in the version
folder beside `saved_model.pb`; TF Serving ignores files it does not know.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from workloads.common import s3
from workloads.common.uri import S3Uri

REPORT_NAME = "accuracy.json"
"""File name of the held-out accuracy report in each version folder."""

SAVED_MODEL_PB = "saved_model.pb"
"""The SavedModel graph; uploaded last so a half-uploaded version is never a loadable model."""


@dataclass(frozen=True, kw_only=True)
class AccuracyReport:
    """Held-out accuracy of one exported version."""

    accuracy: float
    """Share of held-out examples classified correctly, 0..1."""
    examples: int
    """Number of held-out examples."""
    model: str
    """Model name (the last segment of `--export`)."""
    version: int
    """Numeric version folder the export lives in."""
    data: str
    """The `--data` source."""
    seed: int
    """Seed of the held-out split: the same seed and data give the same held-out examples."""
    holdout_fraction: float
    """Share of the data held out."""
    epochs: int
    """Epochs trained."""
    class_names: list[str]
    """Class names; `predicted_classes` index this list."""
    predicted_classes: list[int]
    """The trained model's class for each held-out example, in split order, to check a served copy against."""

    def to_json(self) -> str:
        """The report as pretty JSON."""
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"


def next_version(base: S3Uri, client: Any | None = None) -> int:
    """One more than the highest numeric version folder under `base` (1 when there is none)."""
    prefix = base.key.rstrip("/") + "/" if base.key else ""
    versions = [
        int(first)
        for key in s3.list_keys(S3Uri(base.bucket, prefix), client)
        if (first := key[len(prefix):].split("/", 1)[0]).isdigit() and "/" in key[len(prefix):]
    ]
    return max(versions, default=0) + 1


def upload_version(local: Path, target: S3Uri, client: Any | None = None) -> list[str]:
    """Upload a SavedModel folder to `target`, `saved_model.pb` last. Returns the keys written."""
    client = client or s3.client()
    files = sorted((p for p in local.rglob("*") if p.is_file()), key=lambda p: (p.name == SAVED_MODEL_PB, str(p)))
    keys = []
    for path in files:
        uri = target.join(path.relative_to(local).as_posix())
        s3.upload_file(path, uri, client)
        keys.append(uri.key)
    return keys
