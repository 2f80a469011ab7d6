"""Stack config for the event stream: `modelplane:streaming` (Amazon MSK on aws, an in-cluster broker elsewhere).

`enabled` left unset is resolved by infra/config/parse.py like the other platform services: on for `aws` stacks,
off for `kubeconfig` (local) stacks. The `topics` are data: a Kubernetes Job creates them idempotently on either
target. Provisioned MSK only, dev included: an MSK Serverless cluster takes neither a KMS key nor broker-log settings
(pulumi-aws 7.51.1 `msk.ServerlessCluster` has only client_authentication, vpc_configs, cluster_name, region, tags),
so it could not meet the platform's rules (policies/rules/streaming.py): a customer key at rest, broker logs on.
"""

from __future__ import annotations

import re
from typing import Final, Literal

from pydantic import Field

from infra import versions
from infra.config.base import Section, not_one_of
from infra.config.logging import CLOUDWATCH_RETENTION_DAYS
from workloads.recommend.settings import DEFAULT_TOPIC
from workloads.recommend.topic_settings import (
    MinInsyncReplicas,
    Partitions,
    ReplicationFactor,
    RetentionHours,
    TopicName,
    TopicSpec,
)

KAFKA_VERSION: Final = r"^\d+\.\d+\.(\d+|x)(\.kraft)?$"
"""The form of MSK's Kafka versions (`3.6.0`, `3.8.x`, `3.9.x.kraft`; supported-kafka-versions.html)."""
TARGET_NEUTRAL: Final = ("enabled", "topics", "local_storage_gb")
"""The fields that are not MSK's: every other one has no effect on a kubeconfig stack."""


class TopicConfig(TopicSpec, Section):
    """One Kafka topic, created by the topics Job with these settings: the Job's own contract (TopicSpec: its field
    bounds and `problems`), with the stack's defaults."""

    name: TopicName
    """Topic name. Required. Valid: 1 to 249 of a-z, A-Z, 0-9, '.', '_', '-' (KAFKA_NAME_PATTERN); not '.' or '..'."""
    partitions: Partitions = 6
    """Partitions: the most consumers of one group that share the work. Defaults to 6. Valid: 1 to 1000."""
    replication_factor: ReplicationFactor = 3
    """Copies of each partition; at most the brokers. Defaults to 3. Valid: 1 to the broker count (32 at most)."""
    min_insync_replicas: MinInsyncReplicas = 2
    """Copies an acks=all write waits for (min.insync.replicas). Defaults to 2. Valid: 1 to replicationFactor - 1
    (or 1 with replicationFactor 1)."""
    retention_hours: RetentionHours = 168
    """Hours a message is kept (retention.ms). Defaults to 168 (7 days). Valid: 1 to 87600."""


class StreamingConfig(Section):
    """`modelplane:streaming`: the Kafka that carries the recommendation events, and its topics."""

    enabled: bool | None = None
    """Run Kafka. Unset: true on aws stacks (MSK), false on kubeconfig stacks (resolved by the parser)."""
    topics: list[TopicConfig] = [TopicConfig(name=DEFAULT_TOPIC)]
    """Topics the topics Job creates. Defaults to recommend-events with the TopicConfig defaults."""
    kafka_version: str = versions.MSK_KAFKA_VERSION
    """MSK Apache Kafka version (aws). Defaults to versions.MSK_KAFKA_VERSION."""
    broker_instance_type: str = "kafka.m7g.large"
    """MSK broker instance type (aws). Defaults to kafka.m7g.large. Valid: a kafka.* type."""
    zones: int = Field(default=3, ge=2, le=3)
    """Availability zones the brokers span, the first of network.privateSubnets (aws). Defaults to 3. Valid: 2 or 3
    (MSK's limits), at most network.availabilityZones."""
    brokers_per_zone: int = Field(default=1, ge=1, le=10)
    """Brokers in each zone (aws). Defaults to 1. Valid: 1 to 10."""
    volume_size_gb: int = Field(default=100, ge=1, le=16384)
    """EBS volume per broker in GiB (aws). Defaults to 100. Valid: 1 to 16384."""
    broker_log_retention_days: int = 30
    """Days CloudWatch keeps the broker logs (aws). Defaults to 30. Valid: CLOUDWATCH_RETENTION_DAYS."""
    kms_deletion_window_days: int = Field(default=30, ge=7, le=30)
    """Waiting period before the cluster's KMS key is deleted (aws). Defaults to 30. Valid: 7 to 30."""
    enhanced_monitoring: Literal["DEFAULT", "PER_BROKER", "PER_TOPIC_PER_BROKER", "PER_TOPIC_PER_PARTITION"] = (
        "PER_BROKER")
    """MSK's CloudWatch metrics level (aws). Defaults to PER_BROKER. Valid: DEFAULT, PER_BROKER,
    PER_TOPIC_PER_BROKER, PER_TOPIC_PER_PARTITION."""
    open_monitoring: bool = False
    """Prometheus JMX and node exporters on the brokers, open to the cluster (aws). Defaults to false."""
    local_storage_gb: int = Field(default=10, ge=0, le=1024)
    """The in-cluster broker's volume in GiB (kubeconfig); 0 keeps the log on an emptyDir. Defaults to 10."""

    @property
    def brokers(self) -> int:
        """Broker count of the MSK cluster: one set per zone."""
        return self.zones * self.brokers_per_zone

    def checks(self, production: bool, is_aws: bool) -> list[tuple[str, str]]:
        """Per-topic rules, unique topic names, replicas the brokers can hold, fields of the other target rejected,
        and production durability."""
        problems: list[tuple[str, str]] = []
        seen: dict[str, int] = {}
        for i, topic in enumerate(self.topics):
            problems += [(f"topics[{i}].{key}", message) for key, message in topic.problems()]
            if topic.name in seen:
                problems.append((f"topics[{i}].name", f"duplicate topic {topic.name!r} (also topics[{seen[topic.name]}])"))
            seen.setdefault(topic.name, i)
        if is_aws:
            problems += self._aws_checks(production)
        else:
            problems += self._local_checks()
        return problems

    def _aws_checks(self, production: bool) -> list[tuple[str, str]]:
        problems = []
        if "local_storage_gb" in self.model_fields_set:
            problems.append(("localStorageGb", "has no effect with target 'aws' (MSK sizes with volumeSizeGb); "
                                               "remove it"))
        if not self.broker_instance_type.startswith("kafka."):
            problems.append(("brokerInstanceType", f"must be an MSK broker type like kafka.m7g.large (got "
                                                   f"{self.broker_instance_type!r})"))
        if not re.match(KAFKA_VERSION, self.kafka_version):
            problems.append(("kafkaVersion", f"must be an MSK Kafka version like {versions.MSK_KAFKA_VERSION} (got "
                                             f"{self.kafka_version!r})"))
        if self.broker_log_retention_days not in CLOUDWATCH_RETENTION_DAYS:
            problems.append(("brokerLogRetentionDays", "CloudWatch Logs " + not_one_of(
                str(self.broker_log_retention_days), [str(d) for d in CLOUDWATCH_RETENTION_DAYS])))
        for i, topic in enumerate(self.topics):
            # Streaming off creates no brokers, so there is nothing the replicas must fit.
            if self.enabled and topic.replication_factor > self.brokers:
                problems.append((f"topics[{i}].replicationFactor", f"must not exceed the brokers ({self.zones} zones x "
                                                                   f"{self.brokers_per_zone} per zone = {self.brokers}) "
                                                                   f"(got {topic.replication_factor}); lower it or "
                                                                   "add brokersPerZone"))
            if production and self.enabled and (topic.replication_factor < 3 or topic.min_insync_replicas < 2):
                # Reported under the value that is wrong: replicationFactor when it is, else minInsyncReplicas.
                key = "replicationFactor" if topic.replication_factor < 3 else "minInsyncReplicas"
                problems.append((f"topics[{i}].{key}", "must be >= 3 with minInsyncReplicas >= 2 "
                                                      f"in a production stack (got {topic.replication_factor} and "
                                                      f"{topic.min_insync_replicas}); one broker lost must not lose "
                                                      "or block writes"))
        if production and self.enabled and self.zones < 3:
            problems.append(("zones", f"must be 3 in a production stack (got {self.zones}); one AZ down must leave a "
                                      "quorum of replicas"))
        return problems

    def _local_checks(self) -> list[tuple[str, str]]:
        unused = "has no effect with target 'kubeconfig' (the in-cluster broker is not MSK); remove it"
        fields = type(self).model_fields
        problems = [(fields[name].alias or name, unused) for name in sorted(self.model_fields_set - {*TARGET_NEUTRAL})]
        if self.enabled:
            problems += [(f"topics[{i}].replicationFactor", f"must be 1 with target 'kubeconfig': the in-cluster "
                                                            f"broker is a single node (got {t.replication_factor}); "
                                                            "set replicationFactor: 1 and minInsyncReplicas: 1")
                         for i, t in enumerate(self.topics) if t.replication_factor != 1]
        return problems

