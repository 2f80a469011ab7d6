"""Gateway settings from flags and `MODELPLANE_GATEWAY_*` environment variables, validated before anything starts.

Built on `workloads.common.settings`: every field is a flag (`--upstream`) and a variable
(`MODELPLANE_GATEWAY_UPSTREAM`); a flag wins over the environment, and every problem is reported at once.
Only stdlib, pydantic and workloads.common are imported, so infra reads the env names without FastAPI or httpx.
"""

from __future__ import annotations

import math
import os
from typing import Annotated, ClassVar, Final, Literal, Self
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from workloads.common.settings import RedisUrlSetting, SecretFileSetting, WorkloadSettings, read_secret
from workloads.common.vocab import GATEWAY_ENV_PREFIX

RATE_LIMIT_MAX: Final = 1_000_000
"""The largest rate and bucket size a key may be given."""
RateLimitRps = Annotated[float, Field(ge=0, le=RATE_LIMIT_MAX)]
"""Requests per second of a key's token bucket; 0 turns the limit off (the gateway's and the stack config's type)."""
RateLimitBurst = Annotated[int, Field(ge=1, le=RATE_LIMIT_MAX)]
"""Size of a key's token bucket: requests it may make at once before the rate applies."""
BURST_SECONDS: Final = 2
"""A bucket holds this many seconds of its rate unless told otherwise (20 at the default 10/s)."""
DEFAULT_RATE_LIMIT_RPS: Final = 10.0
"""The gateway's own default rate per key."""


def default_burst(rps: float) -> int:
    """The bucket size for `rps` requests per second: BURST_SECONDS of them, at least 1."""
    return max(1, min(math.ceil(rps * BURST_SECONDS), RATE_LIMIT_MAX))


def read_keys(text: str) -> frozenset[str]:
    """API keys from a file's text or a variable's value: one per line or comma-separated; `#` starts a comment."""
    keys = set()
    for line in text.splitlines():
        for key in line.split("#", 1)[0].split(","):
            if key.strip():
                keys.add(key.strip())
    return frozenset(keys)


class GatewaySettings(WorkloadSettings):
    """Everything `python -m workloads.gateway` can be configured with."""

    env_prefix: ClassVar[str] = GATEWAY_ENV_PREFIX
    prog: ClassVar[str] = "python -m workloads.gateway"

    upstream: str
    """Base URL of the OpenAI-compatible runtime (vLLM or our server), such as http://vllm:8000; `/v1/...` is appended."""
    upstream_api_key_env: str | None = None
    """Name of the environment variable holding the key the gateway sends upstream as `Authorization: Bearer`.
    Defaults to none (the runtime is reachable only from the gateway)."""
    connect_timeout_s: float = Field(2.0, gt=0, le=60)
    """Seconds to open a connection to the upstream before answering 503. Defaults to 2."""
    read_timeout_s: float = Field(120.0, gt=0, le=3600)
    """Seconds the upstream may stay silent (before its answer, or between two streamed chunks) before the gateway
    answers 504 or ends the stream. Defaults to 120."""
    max_connections: int = Field(256, ge=1, le=100_000)
    """Most open connections to the upstream; more requests wait up to --connect-timeout-s. Defaults to 256."""
    max_body_bytes: int = Field(1 << 20, ge=64, le=1 << 30)
    """Largest request body in bytes; more gets 413. Defaults to 1 MiB."""
    api_keys_file: SecretFileSetting | None = None
    """File of the API keys clients send as `Authorization: Bearer` (one per line; a mounted Kubernetes Secret)."""
    api_keys_env: str | None = None
    """Name of the environment variable holding API keys (comma-separated), in addition to --api-keys-file."""
    allow_anonymous: bool = False
    """Serve requests without an API key. Defaults to false: a key file or variable is required."""
    rate_limit_rps: RateLimitRps = DEFAULT_RATE_LIMIT_RPS
    """Requests per second each API key may make on average (a token bucket, per gateway replica); 0 turns it off.
    Defaults to 10."""
    rate_limit_burst: RateLimitBurst = default_burst(DEFAULT_RATE_LIMIT_RPS)
    """Requests a key may make at once before the rate applies (the bucket size). Defaults to 20."""
    redis_url: RedisUrlSetting | None = None
    """redis:// or rediss:// URL of the response cache. Defaults to no cache (or the --redis-url-file's URL)."""
    redis_url_file: SecretFileSetting | None = None
    """File holding the cache's URL with its password (a mounted Secret); read when --redis-url is not given.
    Defaults to none."""
    cache_version: str = ""
    """Part of every cache key: set it to the model's URI or digest so new weights never serve old answers.
    Defaults to empty."""
    cache_ttl: int = Field(3600, ge=1, le=30 * 24 * 3600)
    """Seconds a cached response lives. Defaults to 3600."""
    cache_max_bytes: int = Field(1 << 20, ge=1, le=512 << 20)
    """Largest response body stored in the cache, in bytes. Defaults to 1 MiB."""
    cache_timeout_ms: float = Field(100.0, gt=0, le=10_000)
    """Redis connect/read timeout in milliseconds; slower calls count as errors. Defaults to 100."""
    cache_backoff_s: float = Field(30.0, ge=0, le=3600)
    """Seconds to stop calling Redis after an error (the cache fails open meanwhile). Defaults to 30."""
    host: str = "0.0.0.0"  # a container listens on all interfaces; the mesh restricts callers
    """Address to listen on. Defaults to 0.0.0.0."""
    port: int = Field(8080, ge=1, le=65535)
    """TCP port to listen on. Defaults to 8080."""
    drain_timeout_s: int = Field(25, ge=0, le=3600)
    """After SIGTERM, seconds to finish in-flight requests before exiting. Defaults to 25 (under k8s' 30 s grace)."""
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    """Uvicorn log level. Defaults to info. Valid values: debug, info, warning, error."""

    @field_validator("upstream")
    @classmethod
    def _check_upstream(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("use an http:// or https:// URL with a host, such as http://vllm:8000")
        if parts.path.rstrip("/").endswith("/v1"):
            raise ValueError("give the base URL without /v1 (the gateway appends /v1/...)")
        return value.rstrip("/")

    @field_validator("upstream_api_key_env", "api_keys_env")
    @classmethod
    def _check_key_env(cls, value: str | None) -> str | None:
        if value is not None and not os.environ.get(value, "").strip():
            raise ValueError(f"environment variable {value} is unset or empty; set it to the key(s)")
        return value

    @field_validator("api_keys_file")
    @classmethod
    def _check_keys(cls, value: SecretFileSetting | None) -> SecretFileSetting | None:
        # SecretFileSetting checked that the file is readable and not empty; comments alone are no key either.
        if value is not None and not read_keys(read_secret(value)):
            raise ValueError("the key file holds no key; write one key per line")
        return value

    @model_validator(mode="after")
    def _check_auth(self) -> Self:
        if not (self.api_keys_file or self.api_keys_env or self.allow_anonymous):
            raise ValueError(f"no API keys: set {self.flag_name('api_keys_file')} ({self.env_name('api_keys_file')}) "
                             f"or {self.flag_name('api_keys_env')}, or pass {self.flag_name('allow_anonymous')}")
        return self

    @property
    def api_keys(self) -> frozenset[str]:
        """Every accepted API key, from the key file and the key variable; the gateway reads them once at start
        (rotation: see workloads.common.settings)."""
        keys: set[str] = set()
        if self.api_keys_file is not None:
            keys |= read_keys(read_secret(self.api_keys_file))
        if self.api_keys_env is not None:
            keys |= read_keys(os.environ.get(self.api_keys_env, ""))
        return frozenset(keys)

    @property
    def upstream_api_key(self) -> str | None:
        """The key sent upstream, read from the variable named by --upstream-api-key-env, if any."""
        if self.upstream_api_key_env is None:
            return None
        return os.environ.get(self.upstream_api_key_env, "").strip() or None


flag_name = GatewaySettings.flag_name
"""The flag of a gateway setting: `rate_limit_rps` -> `--rate-limit-rps`."""
env_name = GatewaySettings.env_name
"""The variable of a gateway setting: `upstream` -> `MODELPLANE_GATEWAY_UPSTREAM`; infra builds env with it."""
