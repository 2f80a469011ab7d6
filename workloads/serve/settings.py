"""Server settings from flags and `MODELPLANE_SERVE_*` environment variables, validated before anything starts.

Built on `workloads.common.settings`: every field is a flag (`--max-batch-size`) and a variable
(`MODELPLANE_SERVE_MAX_BATCH_SIZE`); a flag wins over the environment, and every problem is reported at once.
"""

from __future__ import annotations

import os
import posixpath
import re
from pathlib import Path
from typing import ClassVar, Final, Literal

from pydantic import Field, field_validator

from workloads.common.settings import RedisUrlSetting, SecretFileSetting, WorkloadSettings, read_secret
from workloads.common.vocab import SERVE_ENV_PREFIX

MODEL_NAME_PATTERN: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
"""A served model name (matched whole, with `fullmatch`)."""
VERSION_PATTERN: Final = re.compile(r"[0-9]{1,18}")
"""A version folder of the `<name>/<version>/` layout TF Serving and KServe use: a whole number (matched whole)."""


class ServeSettings(WorkloadSettings):
    """Everything `python -m workloads.serve` can be configured with."""

    env_prefix: ClassVar[str] = SERVE_ENV_PREFIX
    prog: ClassVar[str] = "python -m workloads.serve"

    model_uri: str
    """Where the model export lives: s3://BUCKET/PREFIX (endpoint from AWS_ENDPOINT_URL) or a local folder."""
    model_name: str | None = None
    """Name clients use in URLs and the OpenAI `model` field. Defaults to the last segment of --model-uri, or the
    one before it when that is a version number (`.../tiny/1` serves `tiny`, version 1; `.../tiny/0001` too)."""
    redis_url: RedisUrlSetting | None = None
    """redis:// or rediss:// URL of the response cache. Defaults to no cache (or the --redis-url-file's URL)."""
    redis_url_file: SecretFileSetting | None = None
    """File holding the cache's URL with its password (a mounted Secret); read when --redis-url is not given.
    Defaults to none."""
    cache_ttl: int = Field(3600, ge=1, le=30 * 24 * 3600)
    """Seconds a cached response lives. Defaults to 3600."""
    cache_max_bytes: int = Field(1 << 20, ge=1, le=512 << 20)
    """Largest response body stored in the cache, in bytes. Defaults to 1 MiB."""
    cache_timeout_ms: float = Field(100.0, gt=0, le=10_000)
    """Redis connect/read timeout in milliseconds; slower calls count as errors. Defaults to 100."""
    cache_backoff_s: float = Field(30.0, ge=0, le=3600)
    """Seconds to stop calling Redis after an error (the cache fails open meanwhile). Defaults to 30."""
    max_batch_size: int = Field(16, ge=1, le=1024)
    """Most requests run together in one batch. Defaults to 16; 1 turns batching off."""
    max_wait_ms: float = Field(5.0, ge=0, le=10_000)
    """Longest a request waits for batch-mates before its batch starts, in milliseconds. Defaults to 5."""
    max_queue: int = Field(256, ge=1, le=1_000_000)
    """Most requests waiting for a batch; beyond it requests get 429. Defaults to 256."""
    max_tokens_cap: int = Field(512, ge=1, le=1_000_000)
    """Largest `max_tokens` a request may ask for; more gets 400. Defaults to 512."""
    request_timeout_s: float = Field(60.0, gt=0, le=3600)
    """Deadline of one request from arrival; past it the request gets 504. Defaults to 60."""
    max_body_bytes: int = Field(1 << 20, ge=64, le=1 << 30)
    """Largest request body in bytes; more gets 413. Defaults to 1 MiB."""
    api_key_env: str | None = None
    """Name of the environment variable holding the API key clients send as `Authorization: Bearer` (local runs).
    Defaults to no authentication."""
    api_key_file: SecretFileSetting | None = None
    """File holding the API key clients send as `Authorization: Bearer` (a mounted Secret); wins over
    --api-key-env. Defaults to none."""
    host: str = "0.0.0.0"  # a container listens on all interfaces; the mesh restricts callers
    """Address to listen on. Defaults to 0.0.0.0."""
    port: int = Field(8080, ge=1, le=65535)
    """TCP port to listen on. Defaults to 8080."""
    drain_timeout_s: int = Field(25, ge=0, le=3600)
    """After SIGTERM, seconds to finish in-flight requests before exiting. Defaults to 25 (under k8s' 30 s grace)."""
    load_timeout_s: float = Field(600.0, gt=0, le=86_400)
    """Seconds to keep retrying the model load before liveness fails and the pod restarts. Defaults to 600."""
    download_dir: Path | None = None
    """Folder the export is downloaded into. Defaults to a fresh temporary folder."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Torch device for the model. Defaults to auto (cuda when available). Valid values: auto, cpu, cuda."""
    torch_threads: int = Field(0, ge=0, le=1024)
    """Torch intra-op threads; set it to the pod's CPU limit to avoid oversubscription.
    Defaults to 0 (torch's default: one per visible core)."""
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    """Uvicorn log level. Defaults to info. Valid values: debug, info, warning, error."""

    @field_validator("model_uri")
    @classmethod
    def _check_uri(cls, value: str) -> str:
        if value != value.strip() or any(not char.isprintable() for char in value):
            raise ValueError("remove the whitespace or control characters (a pasted newline?) from the URI")
        if value.startswith("s3://"):
            bucket = value[len("s3://") :].partition("/")[0]
            if not bucket:
                raise ValueError("the S3 URI has no bucket; use s3://BUCKET/PREFIX")
        elif "://" in value:
            raise ValueError("use s3://BUCKET/PREFIX or a local folder path")
        elif not value.strip():
            raise ValueError("must not be empty")
        return value

    @field_validator("api_key_env")
    @classmethod
    def _check_key_env(cls, value: str | None) -> str | None:
        if value is not None and not os.environ.get(value):
            raise ValueError(f"environment variable {value} is unset or empty; set it to the API key")
        return value

    @field_validator("model_name")
    @classmethod
    def _check_name(cls, value: str | None) -> str | None:
        if value is not None and not MODEL_NAME_PATTERN.fullmatch(value):
            raise ValueError("use 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit")
        return value

    @property
    def served_name(self) -> str:
        """The model name clients use: --model-name, else the URI's last path segment (the one before a version),
        else the bucket."""
        if self.model_name:
            return self.model_name
        segments = self._path_segments
        if self.uri_version:
            tail = segments[-2]
        elif segments:
            tail = segments[-1]
        else:
            tail = self.model_uri.removeprefix("s3://").partition("/")[0]
        cleaned = re.sub(r"[^A-Za-z0-9._-]", "-", tail).lstrip("._-")[:128]
        return cleaned or "model"

    @property
    def uri_version(self) -> str | None:
        """The version of a `<name>/<version>` URI (TF Serving's and KServe's model layout: `s3://models/tiny/1` is
        version 1 of `tiny`), as Triton's clients write it (`0001` is `1`); None when the last segment is not a whole
        number or nothing names the model."""
        segments = self._path_segments
        if len(segments) >= 2 and VERSION_PATTERN.fullmatch(segments[-1]):
            return str(int(segments[-1]))
        return None

    @property
    def _path_segments(self) -> list[str]:
        """The URI's path segments: after the bucket for s3://, the folder's for a local path (normalised, so `.`
        and `..` name what they point at); `.` and `..` never count as names."""
        if self.model_uri.startswith("s3://"):
            path = self.model_uri.removeprefix("s3://").partition("/")[2]
        else:
            path = posixpath.normpath(self.model_uri)
        return [segment for segment in path.split("/") if segment not in ("", ".", "..")]

    @property
    def api_key(self) -> str | None:
        """The API key read from --api-key-file, else from the variable named by --api-key-env, if any. The server
        reads it once at start (rotation: see workloads.common.settings)."""
        if self.api_key_file is not None:
            return read_secret(self.api_key_file)
        return os.environ.get(self.api_key_env) if self.api_key_env else None


flag_name = ServeSettings.flag_name
"""The flag of a server setting: `max_batch_size` -> `--max-batch-size`."""
env_name = ServeSettings.env_name
"""The variable of a server setting: `max_batch_size` -> `MODELPLANE_SERVE_MAX_BATCH_SIZE`; infra builds env with it."""
