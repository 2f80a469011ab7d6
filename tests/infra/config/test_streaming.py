"""`modelplane:streaming`: defaults per target, Kafka's topic rules, replicas the brokers can hold, production
durability, fields of the other target rejected; every error names its key path, the value and the fix."""

from typing import Any

import pytest
from pydantic import TypeAdapter

from infra import versions
from infra.config.errors import ConfigError
from infra.config.parse import parse_config
from tests.support.graph import load_platform_config, stack_config_with
from workloads.recommend.settings import DEFAULT_TOPIC
from workloads.recommend.topic_settings import TopicsSetting, encode_topics

KEY = "modelplane:streaming"
JOB_TOPICS = TypeAdapter(TopicsSetting)


def _topic(**fields: Any) -> dict[str, Any]:
    return {"name": "events", **fields}


# (description, stack, the streaming section's changes, expected key path, expected message parts)
INVALID: list[tuple[str, str, dict[str, Any], str, tuple[str, ...]]] = [
    ("topic name Kafka refuses", "dev", {"topics": [_topic(name="user events")]},
     "topics[0].name", ("String should match pattern", "'user events'")),
    ("topic name of dots", "dev", {"topics": [_topic(name="..", replicationFactor=2, minInsyncReplicas=1)]},
     "topics[0].name", ("must not be '.' or '..'", "(got '..')")),
    ("duplicate topic", "dev", {"topics": [{"name": "a", "replicationFactor": 2, "minInsyncReplicas": 1},
                                           {"name": "a", "replicationFactor": 2, "minInsyncReplicas": 1}]},
     "topics[1].name", ("duplicate topic 'a' (also topics[0])",)),
    ("min in-sync equal to replicas", "staging", {"topics": [_topic(replicationFactor=3, minInsyncReplicas=3)]},
     "topics[0].minInsyncReplicas", ("must be below replicationFactor (3)", "(got 3)", "set it to 2")),
    ("min in-sync above a single replica", "dev", {"topics": [_topic(replicationFactor=1, minInsyncReplicas=2)]},
     "topics[0].minInsyncReplicas", ("must be 1 with replicationFactor 1", "(got 2)")),
    ("more replicas than brokers", "dev", {"topics": [_topic(replicationFactor=3, minInsyncReplicas=2)]},
     "topics[0].replicationFactor", ("must not exceed the brokers (2 zones x 1 per zone = 2)", "(got 3)",
                                     "add brokersPerZone")),
    ("zero partitions", "dev", {"topics": [_topic(partitions=0)]},
     "topics[0].partitions", ("greater than or equal to 1", "(got 0)")),
    ("not an MSK broker type", "dev", {"brokerInstanceType": "m7g.large"},
     "brokerInstanceType", ("must be an MSK broker type like kafka.m7g.large", "(got 'm7g.large')")),
    ("Kafka version MSK does not name", "dev", {"kafkaVersion": "3.8"},
     "kafkaVersion", ("must be an MSK Kafka version like 3.8.x", "(got '3.8')")),
    ("log retention CloudWatch refuses", "dev", {"brokerLogRetentionDays": 10},
     "brokerLogRetentionDays", ("CloudWatch Logs must be one of 1, 3, 5, 7, 14, 30", "(got '10')")),
    ("unknown monitoring level", "dev", {"enhancedMonitoring": "PER_TOPIC"},
     "enhancedMonitoring", ("Input should be 'DEFAULT', 'PER_BROKER'", "(got 'PER_TOPIC')")),
    ("four zones", "staging", {"zones": 4}, "zones", ("less than or equal to 3", "(got 4)")),
    ("more zones than the network has", "dev", {"zones": 3, "topics": [_topic(replicationFactor=2,
                                                                              minInsyncReplicas=1)]},
     "zones", ("must not exceed network.availabilityZones (2)", "(got 3)", "lower it or add a zone")),
    ("two zones in production", "prod", {"zones": 2, "brokersPerZone": 2},
     "zones", ("must be 3 in a production stack (got 2)",)),
    ("replication 2 in production", "prod", {"topics": [_topic(replicationFactor=2, minInsyncReplicas=1)]},
     "topics[0].replicationFactor", ("must be >= 3 with minInsyncReplicas >= 2 in a production stack",
                                     "(got 2 and 1)")),
    ("min in-sync 1 in production", "prod", {"topics": [_topic(replicationFactor=3, minInsyncReplicas=1)]},
     "topics[0].minInsyncReplicas", ("must be >= 3 with minInsyncReplicas >= 2 in a production stack",
                                     "(got 3 and 1)")),
    ("min in-sync to the replicas in the Job's contract", "staging",
     {"topics": [_topic(replicationFactor=2, minInsyncReplicas=5)]},
     "topics[0].minInsyncReplicas", ("must be below replicationFactor (2)", "(got 5)", "set it to 1")),
    ("partitions above the contract's bound", "dev", {"topics": [_topic(partitions=1001)]},
     "topics[0].partitions", ("less than or equal to 1000", "(got 1001)")),
    ("local storage on aws", "dev", {"localStorageGb": 5},
     "localStorageGb", ("has no effect with target 'aws'", "remove it")),
    ("MSK setting on a kubeconfig stack", "local", {"brokerInstanceType": "kafka.t3.small"},
     "brokerInstanceType", ("has no effect with target 'kubeconfig'", "remove it")),
    ("MSK zones on a kubeconfig stack", "local", {"zones": 2, "openMonitoring": True},
     "zones", ("has no effect with target 'kubeconfig'",)),
    ("replicas on the single local broker", "local", {"topics": [_topic(replicationFactor=3, minInsyncReplicas=2)]},
     "topics[0].replicationFactor", ("must be 1 with target 'kubeconfig'", "(got 3)", "set replicationFactor: 1")),
    ("unknown key", "dev", {"brokerPerZone": 2}, "brokerPerZone", ("unknown key", "did you mean 'brokersPerZone'?")),
]


@pytest.mark.parametrize(("stack", "changes", "path", "parts"), [case[1:] for case in INVALID],
                         ids=[case[0] for case in INVALID])
def test_invalid_streaming_config_names_key_value_and_fix(stack: str, changes: dict[str, Any], path: str,
                                                          parts: tuple[str, ...]) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(stack, stack_config_with(stack, {KEY: changes}))
    found = [str(issue) for issue in caught.value.issues if issue.path == f"{KEY}.{path}"]
    assert found, f"no issue at {KEY}.{path}: {caught.value}"
    assert any(all(part in text for part in parts) for text in found), found


def test_streaming_is_on_for_aws_and_off_for_kubeconfig_unless_asked() -> None:
    # The recommendation processor needs streaming, so its section goes too.
    unset = {KEY: None, "modelplane:recommend": None}
    aws = parse_config("staging", stack_config_with("staging", unset))
    local = parse_config("local", stack_config_with("local", unset))
    assert (aws.streaming.enabled, local.streaming.enabled) == (True, False)
    assert [t.name for t in aws.streaming.topics] == [DEFAULT_TOPIC]
    topic = aws.streaming.topics[0]
    assert (topic.partitions, topic.replication_factor, topic.min_insync_replicas, topic.retention_hours) == (6, 3, 2, 168)
    assert (aws.streaming.kafka_version, aws.streaming.zones, aws.streaming.brokers) == (versions.MSK_KAFKA_VERSION, 3, 3)


def test_replicated_topics_are_refused_on_kubeconfig_only_while_streaming_is_on() -> None:
    changes = {KEY: {"enabled": False, "topics": None, "localStorageGb": None}, "modelplane:recommend": None}
    local = parse_config("local", stack_config_with("local", changes))
    assert (local.streaming.enabled, local.streaming.topics[0].replication_factor) == (False, 3)


def test_replicas_need_not_fit_brokers_while_streaming_is_off() -> None:
    changes = {KEY: {"enabled": False, "topics": [_topic(replicationFactor=3, minInsyncReplicas=2)]},
               "modelplane:recommend": None}
    dev = parse_config("dev", stack_config_with("dev", changes))
    assert (dev.streaming.enabled, dev.streaming.brokers, dev.streaming.topics[0].replication_factor) == (False, 2, 3)


def test_one_topic_schema_and_name_rule_serve_the_stack_and_the_topics_job() -> None:
    # The Job refuses what the stack config refuses ("min in-sync to the replicas" above): one rule, declared once.
    with pytest.raises(ValueError, match=r"topics\[0\]\.minInsyncReplicas: must be below replicationFactor \(3\)"):
        JOB_TOPICS.validate_python(
            encode_topics([{"name": "e", "partitions": 1, "replicationFactor": 3, "retentionHours": 1,
                            "minInsyncReplicas": 3}]))


def test_real_stacks_size_kafka_per_environment() -> None:
    dev, staging, prod, local = (load_platform_config(s).streaming for s in ("dev", "staging", "prod", "local"))
    assert (dev.brokers, dev.broker_instance_type, dev.topics[0].replication_factor) == (2, "kafka.t3.small", 2)
    assert (staging.brokers, staging.topics[0].replication_factor, staging.topics[0].min_insync_replicas) == (3, 3, 2)
    assert (prod.zones, prod.topics[0].replication_factor, prod.topics[0].min_insync_replicas) == (3, 3, 2)
    assert prod.topics[0].retention_hours > staging.topics[0].retention_hours > dev.topics[0].retention_hours
    assert (local.enabled, local.local_storage_gb, [t.replication_factor for t in local.topics]) == (True, 10, [1])
    assert {t.name for s in (dev, staging, prod, local) for t in s.topics} == {DEFAULT_TOPIC}
