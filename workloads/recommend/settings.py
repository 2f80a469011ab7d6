"""Settings of the recommendation stream processor and its load generator (flags and `MODELPLANE_RECOMMEND_*`)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from workloads.common.settings import RedisUrlSetting, SecretFileSetting, WorkloadSettings
from workloads.common.vocab import RECOMMEND_ENV_PREFIX, RECOMMEND_LOADGEN_ENV_PREFIX
from workloads.recommend.kafka import KafkaClientSettings

FEATURE_KEY_PREFIX = "rec:"
"""Default prefix of the feature keys the processor writes and the recommendation service reads."""
DEFAULT_TOPIC = "recommend-events"
"""The events topic both workloads default to."""


class ProcessorSettings(KafkaClientSettings, WorkloadSettings):
    """Consume user events and keep per-user features in Redis."""

    env_prefix: ClassVar[str] = RECOMMEND_ENV_PREFIX
    prog: ClassVar[str] = "python -m workloads.recommend.processor"

    redis_url: RedisUrlSetting
    """Redis holding the features (redis://HOST:PORT/DB). Required: given itself or read from --redis-url-file."""
    redis_url_file: SecretFileSetting | None = None
    """File holding the features' Redis URL with its password (a mounted Secret); read when --redis-url is not
    given. Defaults to none."""
    topic: str = Field(DEFAULT_TOPIC, min_length=1)
    """Topic of the events. Defaults to recommend-events."""
    group_id: str = Field("recommend-processor", min_length=1)
    """Consumer group the replicas share. Defaults to recommend-processor."""
    dead_letter_topic: str = ""
    """Topic that receives invalid events (with an `error` header). Defaults to none: they are counted and skipped."""
    key_prefix: str = Field(FEATURE_KEY_PREFIX, min_length=1)
    """Prefix of every Redis key the processor writes. Defaults to rec:."""
    recent_items: int = Field(50, ge=1, le=10_000)
    """How many recent items each user's list keeps. Defaults to 50."""
    feature_ttl_s: int = Field(7 * 24 * 3600, ge=1)
    """Seconds a user's features live after their last event. Defaults to 7 days."""
    half_life_s: float = Field(3600.0, gt=0)
    """Half-life of the decayed per-type counts, seconds of event time. Defaults to 3600."""
    batch_size: int = Field(500, ge=1, le=100_000)
    """Most messages per batch (one Redis round trip, one commit). Defaults to 500."""
    poll_timeout_s: float = Field(0.1, gt=0, le=60)
    """Longest wait for a batch to fill; it bounds the freshness of a quiet stream. Defaults to 0.1."""
    session_timeout_ms: int = Field(45_000, ge=1000)
    """librdkafka session.timeout.ms: how soon a dead replica's partitions move (heartbeats every third of it).
    Defaults to 45000."""
    max_poll_interval_ms: int = Field(300_000, ge=1000)
    """librdkafka max.poll.interval.ms (also bounds a group join). Defaults to 300000."""
    stats_interval_ms: int = Field(5000, ge=100)
    """How often librdkafka reports consumer lag. Defaults to 5000."""
    metrics_port: int = Field(9100, ge=0, le=65535)
    """Port of the Prometheus /metrics endpoint; 0 turns it off. Defaults to 9100."""


class LoadgenSettings(KafkaClientSettings, WorkloadSettings):
    """Produce synthetic click/view/purchase events, keyed by user, for demos and benchmarks."""

    env_prefix: ClassVar[str] = RECOMMEND_LOADGEN_ENV_PREFIX
    prog: ClassVar[str] = "python -m workloads.recommend.loadgen"

    topic: str = Field(DEFAULT_TOPIC, min_length=1)
    """Topic to write to. Defaults to recommend-events."""
    events: int = Field(10_000, ge=1)
    """How many events to produce. Defaults to 10000."""
    rate: float = Field(0.0, ge=0)
    """Events per second; 0 produces as fast as the broker takes them. Defaults to 0."""
    users: int = Field(100, ge=1)
    """Number of distinct users. Defaults to 100."""
    items: int = Field(1000, ge=1)
    """Number of distinct items. Defaults to 1000."""
    clusters: int = Field(10, ge=1)
    """Item clusters: each user mostly picks items of its own cluster (planted structure). Defaults to 10."""
    seed: int = 0
    """Random seed (the same seed gives the same users, items and types). Defaults to 0."""
