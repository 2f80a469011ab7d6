"""Settings of `python -m workloads.lm.fetch` from flags and `MODELPLANE_MODEL_FETCH_*` variables.

Only stdlib, pydantic and workloads.common are imported, so infra reads the flag names without torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Self

from pydantic import model_validator

from workloads.common.settings import S3UriSetting, WorkloadSettings
from workloads.common.vocab import MODEL_FETCH_ENV_PREFIX


class FetchSettings(WorkloadSettings):
    """Download an LM export from S3 and verify it against its manifest, or only check that it is complete in S3."""

    env_prefix: ClassVar[str] = MODEL_FETCH_ENV_PREFIX
    prog: ClassVar[str] = "python -m workloads.lm.fetch"

    model_uri: S3UriSetting
    """S3 folder of the export (s3://BUCKET/PREFIX), as the trainer wrote it with its manifest.json."""
    target: Path | None = None
    """Local folder to download the export into; replaced as a whole. Required unless --verify-only."""
    verify_only: bool = False
    """Only check in S3 that the manifest exists and every file it lists is there with its size; download nothing
    (for runtimes that stream the weights from S3 themselves). Defaults to false."""

    @model_validator(mode="after")
    def _target_unless_verify_only(self) -> Self:
        if self.target is None and not self.verify_only:
            raise ValueError(f"{self.flag_name('target')} ({self.env_name('target')}): is required unless "
                             f"{self.flag_name('verify_only')} is set (the folder to download the export into)")
        return self
