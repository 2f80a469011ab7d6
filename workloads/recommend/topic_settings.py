"""Settings of the Kafka topics Job (`python -m workloads.recommend.topics`): the declared topics as a JSON contract.

`TopicSpec` is the camelCase shape of the stack's `modelplane:streaming.topics` entries; infra serialises its
topics with `encode_topics` into the Job's env, so the workload never imports infra and infra never imports the
Kafka client (this module needs only pydantic and workloads.common).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, ClassVar, Final

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, TypeAdapter, ValidationError
from pydantic.alias_generators import to_camel

from workloads.common.settings import WorkloadSettings
from workloads.common.vocab import KAFKA_TOPICS_ENV_PREFIX
from workloads.recommend.kafka import KafkaClientSettings

RETENTION_MS: Final = "retention.ms"
"""Kafka topic config: how long a message is kept."""
MIN_ISR: Final = "min.insync.replicas"
"""Kafka topic config: copies an acks=all write waits for."""
KAFKA_NAME_PATTERN: Final = r"^[a-zA-Z0-9._-]{1,249}$"
"""Kafka's topic-name rule (org.apache.kafka.common.internals.Topic.validate): ASCII letters, digits, '.', '_', '-';
249 characters at most ('.' and '..' alone are illegal too: `TopicSpec.problems`). Our consumer group names follow
it as well, since the IAM grants put them in ARNs."""

# The bounds of each topic field, declared once: the Job's contract (TopicSpec) and the stack config
# (infra/config/streaming.py TopicConfig, which adds defaults) both annotate with these.
TopicName = Annotated[str, Field(pattern=KAFKA_NAME_PATTERN)]
"""A Kafka topic name (KAFKA_NAME_PATTERN)."""
Partitions = Annotated[int, Field(ge=1, le=1000)]
"""Partitions of a topic. Valid: 1 to 1000."""
ReplicationFactor = Annotated[int, Field(ge=1, le=32)]
"""Copies of each partition. Valid: 1 to 32 (and at most the brokers, which the Job's cluster or the stack knows)."""
MinInsyncReplicas = Annotated[int, Field(ge=1, le=32)]
"""min.insync.replicas. Valid: 1 to 32, below the replication factor (`TopicSpec.problems`)."""
RetentionHours = Annotated[int, Field(ge=1, le=87600)]
"""Hours a message is kept (retention.ms). Valid: 1 to 87600 (10 years)."""


class TopicSpec(BaseModel):
    """One declared topic (camelCase keys, as in the stack config)."""

    model_config = ConfigDict(frozen=True, extra="forbid", alias_generator=to_camel, populate_by_name=True,
                              use_attribute_docstrings=True)

    name: TopicName
    """Topic name (Kafka's rule: 1 to 249 of a-z, A-Z, 0-9, '.', '_', '-')."""
    partitions: Partitions
    """Partitions."""
    replication_factor: ReplicationFactor
    """Copies of each partition."""
    retention_hours: RetentionHours
    """Hours a message is kept (retention.ms)."""
    min_insync_replicas: MinInsyncReplicas
    """min.insync.replicas."""

    def configs(self) -> dict[str, str]:
        """The topic configs the Job sets and keeps."""
        return {RETENTION_MS: str(self.retention_hours * 3_600_000), MIN_ISR: str(self.min_insync_replicas)}

    def problems(self) -> list[tuple[str, str]]:
        """(camelCase key, message) for each rule across fields: Kafka's '.'/'..' names, and an in-sync minimum
        that tolerates one replica down (below replicationFactor; 1 with a single replica)."""
        problems = []
        if self.name in (".", ".."):
            problems.append(("name", f"must not be '.' or '..' (Kafka rejects them) (got {self.name!r})"))
        if self.replication_factor == 1 and self.min_insync_replicas != 1:
            problems.append(("minInsyncReplicas", f"must be 1 with replicationFactor 1 (got "
                                                  f"{self.min_insync_replicas})"))
        elif self.replication_factor > 1 and self.min_insync_replicas >= self.replication_factor:
            problems.append(("minInsyncReplicas", f"must be below replicationFactor ({self.replication_factor}) so "
                                                  f"one broker down does not stop acks=all writes (got "
                                                  f"{self.min_insync_replicas}); set it to "
                                                  f"{self.replication_factor - 1}"))
        return problems


def _parse_topics(value: Any) -> list[TopicSpec]:
    """The topics of a JSON string (or a list): every problem named by its index and key, duplicates refused."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError(f"is not valid JSON ({exc}); expected a list of topic objects") from exc
    try:
        specs = _SPECS.validate_python(value)
    except ValidationError as exc:
        raise ValueError("; ".join(f"topics{''.join(f'[{p}]' if isinstance(p, int) else f'.{p}' for p in e['loc'])}: "
                                   f"{e['msg']}" for e in exc.errors())) from exc
    if not specs:
        raise ValueError("must declare at least one topic")
    problems = [f"topics[{i}].{key}: {message}" for i, spec in enumerate(specs) for key, message in spec.problems()]
    if problems:
        raise ValueError("; ".join(problems))
    names = [spec.name for spec in specs]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"each topic may be declared once (duplicates: {', '.join(duplicates)})")
    return specs


_SPECS: Final = TypeAdapter(list[TopicSpec])
TopicsSetting = Annotated[list[TopicSpec], PlainValidator(_parse_topics)]
"""A setting holding a JSON list of TopicSpec objects."""


def encode_topics(topics: Sequence[Mapping[str, Any]]) -> str:
    """The `--topics` JSON of `topics` (mappings in TopicSpec's shape, camelCase or snake_case), validated."""
    return _SPECS.dump_json(_SPECS.validate_python(list(topics)), by_alias=True).decode()


class TopicsSettings(KafkaClientSettings, WorkloadSettings):
    """Create the declared Kafka topics, or bring them to their declared partitions and configs."""

    env_prefix: ClassVar[str] = KAFKA_TOPICS_ENV_PREFIX
    prog: ClassVar[str] = "python -m workloads.recommend.topics"

    topics: TopicsSetting
    """The topics, a JSON list of {name, partitions, replicationFactor, retentionHours, minInsyncReplicas}. Required."""
    connect_timeout_s: float = Field(300.0, gt=0, le=3600)
    """How long to keep retrying until the brokers answer, seconds. Defaults to 300."""
    request_timeout_s: float = Field(30.0, gt=0, le=600)
    """Longest wait for one admin request, seconds. Defaults to 30."""
