"""Settings of the recommender's dataset writer, trainer and service (flags and `MODELPLANE_RECOMMEND_*_` env).

The trainer's `data`, `checkpoints`, `export` and `metrics_port` fields are the flags the platform's TrainingJob
passes (workloads.common.vocab DATA_FLAG, CHECKPOINTS_FLAG, EXPORT_FLAG, METRICS_PORT_FLAG); the infra renders
the service's env from `ServiceSettings.env_name`. Only stdlib, pydantic, workloads.common and the light
workloads.recommend.settings are imported, so infra reads the names without torch.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import AfterValidator, Field

from workloads.common.settings import RedisUrlSetting, SecretFileSetting, WorkloadSettings
from workloads.common.uri import s3_uri_problem
from workloads.common.vocab import (
    RECOMMEND_DATASET_ENV_PREFIX,
    RECOMMEND_SERVICE_ENV_PREFIX,
    RECOMMEND_TRAIN_ENV_PREFIX,
)
from workloads.recommend.settings import FEATURE_KEY_PREFIX


def _check_location(value: str) -> str:
    if value.startswith("s3://"):
        problem = s3_uri_problem(value)
        if problem:
            raise ValueError(problem)
    elif "://" in value:
        raise ValueError("use s3://BUCKET/PREFIX (endpoint from AWS_ENDPOINT_URL) or a local folder path")
    elif not value.strip():
        raise ValueError("must not be empty")
    return value


Location = Annotated[str, AfterValidator(_check_location)]
"""A setting naming an `s3://BUCKET/PREFIX` or a local folder."""


class DatasetSettings(WorkloadSettings):
    """Write a synthetic interaction log with planted structure (JSON Lines, gzip) to S3 or a folder."""

    env_prefix: ClassVar[str] = RECOMMEND_DATASET_ENV_PREFIX
    prog: ClassVar[str] = "python -m workloads.recommend.dataset"

    out: Location
    """Where the log's shards go: s3://BUCKET/PREFIX or a folder. Required."""
    events: int = Field(20_000, ge=1, le=100_000_000)
    """How many interactions to write. Defaults to 20000."""
    users: int = Field(200, ge=1)
    """Number of distinct users. Defaults to 200."""
    items: int = Field(300, ge=1)
    """Number of distinct items. Defaults to 300."""
    clusters: int = Field(10, ge=1)
    """Item clusters; each user mostly picks items of its own cluster (the loadgen's planted structure). Defaults to 10."""
    seed: int = 0
    """Random seed: the same seed writes the same log. Defaults to 0."""
    shard_events: int = Field(50_000, ge=1)
    """Most events per `part-NNNNN.jsonl.gz` shard. Defaults to 50000."""


class TrainSettings(WorkloadSettings):
    """Train the matrix-factorisation recommender (BPR) on an interaction log and export it."""

    env_prefix: ClassVar[str] = RECOMMEND_TRAIN_ENV_PREFIX
    prog: ClassVar[str] = "python -m workloads.recommend.train"

    data: Location
    """The interaction log: s3://BUCKET/PREFIX or a folder of `*.jsonl` / `*.jsonl.gz` event files. Required."""
    export: Location
    """Where the export (model.safetensors + config.json) is written: s3://BUCKET/PREFIX or a folder. Required."""
    checkpoints: Location | None = None
    """Where `epoch-NNNN.pt` checkpoints go after every epoch; a rerun resumes from the newest. Defaults to none."""
    metrics_port: int = Field(0, ge=0, le=65535)
    """Port of the Prometheus /metrics endpoint during training; 0 turns it off. Defaults to 0."""
    epochs: int = Field(20, ge=1, le=10_000)
    """Passes over the training interactions. Defaults to 20."""
    dim: int = Field(32, ge=1, le=1024)
    """Embedding size of users and items. Defaults to 32."""
    lr: float = Field(0.05, gt=0, le=10)
    """Adam learning rate. Defaults to 0.05."""
    weight_decay: float = Field(1e-4, ge=0, le=1)
    """L2 penalty on the embeddings of each batch. Defaults to 1e-4."""
    batch_size: int = Field(1024, ge=1, le=1_000_000)
    """(user, positive, negative) triples per step. Defaults to 1024."""
    holdout: int = Field(1, ge=0, le=1000)
    """Each user's last N interactions held out for recall@10 (users with fewer than N + 1 are not split).
    Defaults to 1; 0 trains on everything and skips the evaluation."""
    seed: int = 0
    """Seed of the initialisation, the negatives and the data order. Defaults to 0."""
    torch_threads: int = Field(0, ge=0, le=1024)
    """Torch intra-op threads; 0 keeps torch's default (one per visible core). Defaults to 0."""


class ServiceSettings(WorkloadSettings):
    """Serve top-k recommendations from the exported model combined with live features from Redis."""

    env_prefix: ClassVar[str] = RECOMMEND_SERVICE_ENV_PREFIX
    prog: ClassVar[str] = "python -m workloads.recommend.service"

    model_uri: Location
    """The trainer's export: s3://BUCKET/PREFIX or a folder. Required."""
    redis_url: RedisUrlSetting | None = None
    """Redis holding the processor's live features (redis://HOST:PORT/DB). Defaults to none: model-only answers
    (or the --redis-url-file's URL)."""
    redis_url_file: SecretFileSetting | None = None
    """File holding that Redis URL with its password (a mounted Secret); read when --redis-url is not given.
    Defaults to none."""
    key_prefix: str = Field(FEATURE_KEY_PREFIX, min_length=1)
    """Prefix of the processor's Redis keys (its --key-prefix). Defaults to rec:."""
    recent_weight: float = Field(1.0, ge=0, le=100)
    """Weight of the mean similarity to the user's recent items, added to the model's score. Defaults to 1.0."""
    recent_items: int = Field(10, ge=1, le=10_000)
    """How many of the user's newest items the similarity uses. Defaults to 10."""
    max_k: int = Field(100, ge=1, le=10_000)
    """Largest k a request may ask for; more gets 400. Defaults to 100."""
    redis_timeout_ms: float = Field(50.0, gt=0, le=10_000)
    """Redis connect/read timeout in milliseconds; slower reads degrade the answer to model-only. Defaults to 50."""
    download_dir: str | None = None
    """Folder an S3 export is downloaded into. Defaults to a fresh temporary folder."""
    torch_threads: int = Field(1, ge=0, le=1024)
    """Torch intra-op threads; 0 keeps torch's default. Defaults to 1 (one small matrix-vector product per request)."""
    host: str = "0.0.0.0"  # a container listens on all interfaces; the mesh restricts callers
    """Address to listen on. Defaults to 0.0.0.0."""
    port: int = Field(8080, ge=1, le=65535)
    """TCP port to listen on. Defaults to 8080."""
    drain_timeout_s: int = Field(25, ge=0, le=3600)
    """After SIGTERM, seconds to finish in-flight requests before exiting. Defaults to 25 (under k8s' 30 s grace)."""
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    """Uvicorn log level. Defaults to info. Valid values: debug, info, warning, error."""
