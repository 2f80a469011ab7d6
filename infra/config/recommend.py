"""Stack config for the recommendation stream processor: `modelplane:recommend` (issue 15).

The processor (`python -m workloads.recommend.processor`) consumes user events from a topic of
`modelplane:streaming` and keeps per-user features in the stack's Redis. `checks()` holds the section's own
rules and those that span sections (the topic, Kafka and Redis it needs); infra/config/parse.py runs it once the
other sections are parsed.
"""

from __future__ import annotations

from pydantic import Field

from infra.config.base import Section, cpu_problems, memory_problems, not_one_of
from infra.config.streaming import StreamingConfig
from infra.config.workloads import image_is_pinned
from workloads.common.metrics import FRESHNESS_BUCKETS, RECOMMEND_FEATURE_FRESHNESS
from workloads.recommend.settings import DEFAULT_TOPIC, ProcessorSettings
from workloads.recommend.topic_settings import KAFKA_NAME_PATTERN


class RecommendConfig(Section):
    """`modelplane:recommend`: the recommendation stream processor as a platform workload (Deployment, HPA on
    consumer lag, PDB, NetworkPolicy, alerts)."""

    enabled: bool = False
    """Deploy the processor. Defaults to false. Requires modelplane:streaming (Kafka) and a Redis (aws: cache)."""
    topic: str = Field(default=DEFAULT_TOPIC, min_length=1)
    """The events topic it consumes; must be a `modelplane:streaming.topics` entry. Defaults to recommend-events."""
    group_id: str = Field(default=ProcessorSettings.model_fields["group_id"].default, pattern=KAFKA_NAME_PATTERN)
    """Consumer group the replicas share (its offsets; the IAM grant names it). Defaults to recommend-processor."""
    dead_letter_topic: str | None = None
    """Topic that receives invalid events; must be a `modelplane:streaming.topics` entry. Defaults to none (invalid
    events are counted and skipped)."""
    min_replicas: int = Field(default=1, ge=1, le=100)
    """Fewest replicas the HPA keeps. Defaults to 1. Valid: 1 to 100; at most 32 (limits.MAX_PROCESSOR_REPLICAS)
    unless modelplane:limits.allowLarge is true."""
    max_replicas: int = Field(default=3, ge=1, le=100)
    """Most replicas the HPA scales to; at most the topic's partitions (a consumer without a partition idles).
    Defaults to 3. At most 32 (limits.MAX_PROCESSOR_REPLICAS) unless modelplane:limits.allowLarge is true."""
    target_lag_per_replica: int = Field(default=1000, ge=1)
    """HPA target: messages of consumer lag (summed over the topic's partitions) per replica. Defaults to 1000."""
    cpu: str = "500m"
    """CPU per replica (request and limit). Defaults to 500m."""
    memory: str = "512Mi"
    """Memory per replica (request and limit). Defaults to 512Mi."""
    freshness_budget_seconds: float = Field(default=1.0, gt=0)
    """Alert when the p99 of event time to features visible in Redis stays above this. Defaults to 1 (issue 15's
    budget). Valid: above 0, below the histogram's largest bucket (FRESHNESS_BUCKETS, 60)."""
    lag_alert_messages: int = Field(default=10_000, ge=1)
    """Alert when the group's summed lag stays above this and keeps growing. Defaults to 10000."""
    image: str | None = None
    """Processor image. Defaults to our recommend image at the pinned release tag."""

    def checks(self, streaming: StreamingConfig | None, has_cache: bool) -> list[tuple[str, str]]:
        """Replica bounds in order, resource quantities, a pinned image, a dead-letter topic apart from the input;
        then the rules that span sections (see `_stream_problems`)."""
        problems = cpu_problems("cpu", self.cpu, "500m") + memory_problems("memory", self.memory, "512Mi")
        if self.min_replicas > self.max_replicas:
            problems.append(("minReplicas", f"must be <= maxReplicas (got {self.min_replicas} > {self.max_replicas})"))
        if self.image is not None and not image_is_pinned(self.image):
            problems.append(("image", f"must be pinned to a tag or digest, never latest or untagged (got {self.image!r})"))
        if self.freshness_budget_seconds >= FRESHNESS_BUCKETS[-1]:
            problems.append(("freshnessBudgetSeconds", (
                f"must be below {FRESHNESS_BUCKETS[-1]:g}, the largest bucket of {RECOMMEND_FEATURE_FRESHNESS} "
                f"(got {self.freshness_budget_seconds:g}); the alert's histogram_quantile never reports more, so it "
                f"could never fire. Set a budget under {FRESHNESS_BUCKETS[-1]:g} seconds")))
        if self.dead_letter_topic == self.topic:
            problems.append(("deadLetterTopic", f"must differ from topic (got {self.topic!r} for both); the processor "
                                                "would read its own dead letters back"))
        return problems + self._stream_problems(streaming, has_cache)

    def _stream_problems(self, streaming: StreamingConfig | None, has_cache: bool) -> list[tuple[str, str]]:
        """With `enabled`: Kafka is on, the topics are declared in `modelplane:streaming.topics`, maxReplicas fits
        the topic's partitions, and the stack has a Redis (`has_cache`: aws `cache.enabled`; kubeconfig's in-cluster one)."""
        if not self.enabled:
            return []
        problems = []
        if streaming is None or not streaming.enabled:
            problems.append(("enabled", "requires modelplane:streaming.enabled: true (the processor consumes from "
                                        "Kafka); enable streaming or set modelplane:recommend.enabled: false"))
        if not has_cache:
            problems.append(("enabled", "requires modelplane:cache.enabled: true (the features live in Redis); enable "
                                        "the cache or set modelplane:recommend.enabled: false"))
        if streaming is None or not streaming.enabled:
            return problems
        partitions = {topic.name: topic.partitions for topic in streaming.topics}
        declared = sorted(partitions) or ["(none declared)"]
        for key, topic in (("topic", self.topic), ("deadLetterTopic", self.dead_letter_topic)):
            if topic is not None and topic not in partitions:
                problems.append((key, f"must name a modelplane:streaming.topics entry: {not_one_of(topic, declared)}; "
                                      "declare the topic there (the topics Job creates it)"))
        if self.topic in partitions and self.max_replicas > partitions[self.topic]:
            problems.append(("maxReplicas", f"must be <= the partitions of topic {self.topic!r} "
                                            f"(modelplane:streaming.topics: {partitions[self.topic]}; got "
                                            f"{self.max_replicas}); a consumer without a partition idles"))
        return problems
