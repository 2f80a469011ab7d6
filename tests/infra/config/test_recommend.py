"""`modelplane:recommend`: defaults, and each rule by its message and key path (the section's own and those that span
`streaming` and `cache`)."""

from typing import Any

import pytest

from infra.config.errors import ConfigError
from infra.config.parse import parse_config
from tests.support.graph import stack_config_with
from workloads.common.metrics import FRESHNESS_BUCKETS

ENABLED = {"enabled": True}


def _issues(stack: str, changes: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(stack, stack_config_with(stack, changes))
    return [str(issue) for issue in info.value.issues]


def _recommend(stack: str = "dev", **section: Any) -> list[str]:
    return _issues(stack, {"modelplane:recommend": {"enabled": True, **section}})


def test_recommend_defaults_to_off_with_the_processor_settings_defaults() -> None:
    config = parse_config("dev", stack_config_with("dev", {"modelplane:recommend": None}))
    recommend = config.recommend
    assert (recommend.enabled, recommend.topic, recommend.group_id) == (False, "recommend-events", "recommend-processor")
    assert (recommend.min_replicas, recommend.max_replicas, recommend.target_lag_per_replica) == (1, 3, 1000)
    assert (recommend.freshness_budget_seconds, recommend.lag_alert_messages) == (1.0, 10_000)
    assert (recommend.cpu, recommend.memory, recommend.image, recommend.dead_letter_topic) == ("500m", "512Mi", None, None)


def test_a_disabled_section_needs_no_streaming_nor_a_declared_topic() -> None:
    raw = stack_config_with("local", {"modelplane:recommend": {"enabled": False, "topic": "elsewhere"},
                                      "modelplane:streaming": {"enabled": False}})
    assert parse_config("local", raw).recommend.enabled is False


def test_enabled_needs_streaming() -> None:
    issues = _issues("dev", {"modelplane:recommend": ENABLED, "modelplane:streaming": {"enabled": False}})
    assert issues == ["modelplane:recommend.enabled: requires modelplane:streaming.enabled: true (the processor consumes "
                      "from Kafka); enable streaming or set modelplane:recommend.enabled: false"]


def test_enabled_needs_the_cache_on_aws() -> None:
    issues = _issues("dev", {"modelplane:recommend": ENABLED, "modelplane:cache": {"enabled": False}})
    assert "modelplane:recommend.enabled: requires modelplane:cache.enabled: true (the features live in Redis); enable " \
           "the cache or set modelplane:recommend.enabled: false" in issues


def test_the_topic_must_be_a_declared_streaming_topic() -> None:
    assert _recommend(topic="recommend-event") == [
        "modelplane:recommend.topic: must name a modelplane:streaming.topics entry: must be one of recommend-events "
        "(got 'recommend-event'); did you mean 'recommend-events'?; declare the topic there (the topics Job creates it)"]


def test_the_dead_letter_topic_must_be_a_declared_streaming_topic() -> None:
    assert _recommend(deadLetterTopic="recommend-dead") == [
        "modelplane:recommend.deadLetterTopic: must name a modelplane:streaming.topics entry: must be one of "
        "recommend-events (got 'recommend-dead'); did you mean 'recommend-events'?; declare the topic there (the topics "
        "Job creates it)"]


def test_the_dead_letter_topic_must_differ_from_the_topic() -> None:
    assert _recommend(deadLetterTopic="recommend-events") == [
        "modelplane:recommend.deadLetterTopic: must differ from topic (got 'recommend-events' for both); the processor "
        "would read its own dead letters back"]


def test_max_replicas_must_fit_the_topic_partitions() -> None:
    # dev's recommend-events has 6 partitions.
    assert _recommend(maxReplicas=7) == [
        "modelplane:recommend.maxReplicas: must be <= the partitions of topic 'recommend-events' "
        "(modelplane:streaming.topics: 6; got 7); a consumer without a partition idles"]


def test_min_replicas_must_not_exceed_max_replicas() -> None:
    assert _recommend(minReplicas=4, maxReplicas=2) == [
        "modelplane:recommend.minReplicas: must be <= maxReplicas (got 4 > 2)"]


@pytest.mark.parametrize(("section", "expected"), [
    ({"cpu": "half"}, "modelplane:recommend.cpu: must be a Kubernetes CPU quantity like 500m or 500m (got 'half')"),
    ({"memory": "1GB"},
     "modelplane:recommend.memory: must be a Kubernetes memory quantity like 512Mi (Ki, Mi, Gi or Ti) (got '1GB')"),
    ({"image": "ghcr.io/modelplane/recommend:latest"},
     "modelplane:recommend.image: must be pinned to a tag or digest, never latest or untagged "
     "(got 'ghcr.io/modelplane/recommend:latest')"),
    ({"groupId": "recommend processor"}, "modelplane:recommend.groupId: String should match pattern"),
    ({"freshnessBudgetSeconds": 0}, "modelplane:recommend.freshnessBudgetSeconds: Input should be greater than 0"),
    ({"targetLagPerReplica": 0}, "modelplane:recommend.targetLagPerReplica: Input should be greater than or equal to 1"),
    ({"lagAlert": 5}, "modelplane:recommend.lagAlert: unknown key 'lagAlert'; did you mean 'lagAlertMessages'?"),
], ids=["cpu", "memory", "image", "group", "budget", "target", "unknown-key"])
def test_each_field_rule_names_the_key_and_the_value(section: dict[str, Any], expected: str) -> None:
    issues = _recommend(**section)
    assert len(issues) == 1 and issues[0].startswith(expected), issues


@pytest.mark.parametrize("budget", [60, 3600])
def test_a_freshness_budget_the_histogram_cannot_exceed_is_refused(budget: float) -> None:
    # histogram_quantile reports at most the largest finite bucket (60 s), so the alert could never fire.
    assert FRESHNESS_BUCKETS[-1] == 60.0
    assert _recommend(freshnessBudgetSeconds=budget) == [
        f"modelplane:recommend.freshnessBudgetSeconds: must be below 60, the largest bucket of "
        f"modelplane_recommend_feature_freshness_seconds (got {budget}); the alert's histogram_quantile never reports "
        f"more, so it could never fire. Set a budget under 60 seconds"]
    raw = stack_config_with("dev", {"modelplane:recommend": {"enabled": True, "freshnessBudgetSeconds": 59.5}})
    assert parse_config("dev", raw).recommend.freshness_budget_seconds == 59.5


def test_every_problem_is_reported_at_once() -> None:
    issues = _issues("dev", {"modelplane:recommend": {"enabled": True, "topic": "nope", "minReplicas": 9},
                             "modelplane:cache": {"enabled": False}})
    # (The cache off also fails dev's recommendation service, whose rule is not this section's.)
    assert [issue.split(":")[1].split(" ")[0] for issue in issues if issue.startswith("modelplane:recommend")] == [
        "recommend.enabled", "recommend.minReplicas", "recommend.topic"]


def test_local_needs_no_cache_section_its_redis_is_in_the_cluster() -> None:
    raw = stack_config_with("local", {"modelplane:recommend": {"enabled": True, "maxReplicas": 3}})
    assert parse_config("local", raw).recommend.enabled is True


def test_local_still_needs_streaming() -> None:
    issues = _issues("local", {"modelplane:recommend": ENABLED, "modelplane:streaming": {"enabled": False}})
    assert issues == ["modelplane:recommend.enabled: requires modelplane:streaming.enabled: true (the processor consumes "
                      "from Kafka); enable streaming or set modelplane:recommend.enabled: false"]
