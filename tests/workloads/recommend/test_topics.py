"""The topics Job against a real Kafka-protocol broker (Tansu): create, rerun, drift, and what Kafka cannot do.

Tansu 0.6.0 answers CreateTopics, Metadata, DescribeConfigs and IncrementalAlterConfigs, but not CreatePartitions
(librdkafka reports `_UNSUPPORTED_FEATURE`, "CreatePartitions (KIP-195) not supported by broker"): the
add-partitions test checks that the Job asks for them and fails naming the topic, the field and the broker's answer.
"""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import Future
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType

from tests.support.dockerfile import REPO_ROOT
from workloads.demo.devservers import free_port
from workloads.demo.kafka import TansuBroker
from workloads.recommend.topic_settings import TopicSpec, TopicsSettings, encode_topics
from workloads.recommend.topics import Outcome, _create, _outcome, main, reconcile


def _topic(name: str = "events", **changes: Any) -> dict[str, Any]:
    return {"name": name, "partitions": 3, "replicationFactor": 1, "retentionHours": 24, "minInsyncReplicas": 1,
            **changes}


def _run(broker: TansuBroker | str, *topics: dict[str, Any], **flags: str) -> int:
    bootstrap = broker if isinstance(broker, str) else broker.bootstrap_servers
    args = ["--bootstrap-servers", bootstrap, "--topics", json.dumps(list(topics)), "--request-timeout-s", "10"]
    return main(args + [arg for k, v in flags.items() for arg in (TopicsSettings.flag_name(k), v)])


def _events(out: str) -> list[str]:
    return [json.loads(line)["event"] for line in out.splitlines() if line.startswith("{")]


def _state(broker: TansuBroker, name: str) -> tuple[int, dict[str, str]]:
    admin = AdminClient({"bootstrap.servers": broker.bootstrap_servers})
    partitions = len(admin.list_topics(timeout=10).topics[name].partitions)
    resource = ConfigResource(ResourceType.TOPIC, name)
    configs = admin.describe_configs([resource])[resource].result(10)
    return partitions, {k: configs[k].value for k in ("retention.ms", "min.insync.replicas")}


def test_creates_the_declared_topics_with_their_partitions_and_configs(kafka: TansuBroker,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(kafka, _topic(), _topic("events-dead", partitions=1, retentionHours=168)) == 0
    assert _state(kafka, "events") == (3, {"retention.ms": "86400000", "min.insync.replicas": "1"})
    assert _state(kafka, "events-dead") == (1, {"retention.ms": "604800000", "min.insync.replicas": "1"})
    assert _events(capsys.readouterr().out) == ["topic_created", "topic_created", "topics_ready"]


def test_a_rerun_with_the_same_spec_changes_nothing(kafka: TansuBroker, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(kafka, _topic()) == 0
    capsys.readouterr()
    assert _run(kafka, _topic()) == 0
    assert _events(capsys.readouterr().out) == ["topics_ready"]
    assert _state(kafka, "events") == (3, {"retention.ms": "86400000", "min.insync.replicas": "1"})


def test_retention_drift_is_altered_in_place(kafka: TansuBroker, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(kafka, _topic()) == 0
    capsys.readouterr()
    assert _run(kafka, _topic(retentionHours=2)) == 0
    assert _events(capsys.readouterr().out) == ["configs_altered", "topics_ready"]
    assert _state(kafka, "events") == (3, {"retention.ms": "7200000", "min.insync.replicas": "1"})


def test_fewer_partitions_than_the_broker_has_is_refused_naming_topic_and_field(
        kafka: TansuBroker, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(kafka, _topic(partitions=4)) == 0
    assert _run(kafka, _topic(partitions=2)) == 1
    assert ("topic 'events': partitions: the broker has 4, the spec asks for 2; Kafka cannot remove partitions: "
            "declare partitions >= 4, or delete and recreate the topic") in capsys.readouterr().err
    assert _state(kafka, "events")[0] == 4


def test_more_partitions_are_requested_and_a_refusal_is_reported(kafka: TansuBroker,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(kafka, _topic(partitions=2)) == 0
    capsys.readouterr()
    assert _run(kafka, _topic(partitions=5)) == 1
    err = capsys.readouterr().err
    assert "topic 'events': partitions: could not add partitions: CreatePartitions (KIP-195) not supported" in err
    assert "topic 'events': partitions: the broker has 2, the spec asks for 5" in err


def test_an_unreachable_broker_is_retried_until_the_deadline(capsys: pytest.CaptureFixture[str]) -> None:
    bootstrap = f"127.0.0.1:{free_port()}"
    assert _run(bootstrap, _topic(), connect_timeout_s="2") == 1
    assert f"the brokers at {bootstrap} did not answer within 2.0s (--connect-timeout-s)" in capsys.readouterr().err


def test_the_job_command_reads_its_topics_from_the_environment(kafka: TansuBroker) -> None:
    env = {"PATH": "/usr/bin:/bin", "MODELPLANE_KAFKA_TOPICS_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
           "MODELPLANE_KAFKA_TOPICS_TOPICS": encode_topics([_topic()])}
    result = subprocess.run([sys.executable, "-m", "workloads.recommend.topics"], cwd=REPO_ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert _state(kafka, "events")[0] == 3


@pytest.mark.parametrize(("topics", "message"), [
    ("[", "is not valid JSON (Expecting value: line 1 column 2 (char 1)); expected a list of topic objects"),
    ("[]", "must declare at least one topic"),
    (json.dumps([_topic(), _topic()]), "each topic may be declared once (duplicates: events)"),
    (json.dumps([_topic(partitions=0)]), "topics[0].partitions: Input should be greater than or equal to 1"),
    (json.dumps([_topic(), {"name": "b", "partitions": 1, "replicationFactor": 1, "retentionHours": 1}]),
     "topics[1].minInsyncReplicas: Field required"),
])
def test_bad_topic_specs_exit_2_naming_the_setting(topics: str, message: str) -> None:
    result = subprocess.run([sys.executable, "-m", "workloads.recommend.topics", "--bootstrap-servers", "k:9092",
                             "--topics", topics], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
                            env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 2
    assert "--topics (MODELPLANE_KAFKA_TOPICS_TOPICS)" in result.stderr and message in result.stderr


def test_encode_topics_takes_snake_or_camel_case_and_writes_camel_case() -> None:
    snake = {"name": "e", "partitions": 1, "replication_factor": 3, "retention_hours": 1, "min_insync_replicas": 2}
    assert json.loads(encode_topics([snake])) == [{"name": "e", "partitions": 1, "replicationFactor": 3,
                                                   "retentionHours": 1, "minInsyncReplicas": 2}]


def test_the_settings_infra_imports_need_no_kafka_client_boto3_or_tenacity() -> None:
    blocked = "import sys; sys.modules.update(dict.fromkeys(['confluent_kafka', 'boto3', 'botocore', 'tenacity'])); "
    result = subprocess.run([sys.executable, "-c", blocked + "import workloads.recommend.topic_settings"],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


class RecordingAdmin(AdminClient):
    """The real AdminClient, recording the keyword arguments of the change requests it sends."""

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__(config)
        self.calls: dict[str, dict[str, Any]] = {}

    def create_topics(self, new_topics: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        self.calls["create_topics"] = kwargs
        return super().create_topics(new_topics, **kwargs)

    def create_partitions(self, new_partitions: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        self.calls["create_partitions"] = kwargs
        return super().create_partitions(new_partitions, **kwargs)


def test_creates_and_partition_requests_wait_for_the_change_to_propagate(kafka: TansuBroker) -> None:
    # operation_timeout 0 (the default) answers before the change reaches every broker: the read-back could miss it.
    admin = RecordingAdmin({"bootstrap.servers": kafka.bootstrap_servers})
    assert reconcile(admin, [TopicSpec.model_validate(_topic(partitions=2))], 10) == []
    assert reconcile(admin, [TopicSpec.model_validate(_topic(partitions=5))], 10) != []  # Tansu lacks KIP-195
    for call in ("create_topics", "create_partitions"):
        assert admin.calls[call]["operation_timeout"] == 10, call
        assert admin.calls[call]["request_timeout"] >= admin.calls[call]["operation_timeout"], call


def test_a_topic_created_by_a_concurrent_run_counts_as_created(kafka: TansuBroker,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(kafka, _topic()) == 0
    capsys.readouterr()
    admin = AdminClient({"bootstrap.servers": kafka.bootstrap_servers})
    assert _create(admin, [TopicSpec.model_validate(_topic())], 10) == []
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert [(r["event"], r["already"]) for r in records] == [("topic_created", True)]


def test_already_exists_is_recognised_by_its_error_code_whatever_the_brokers_wording() -> None:
    future: Future[None] = Future()
    future.set_exception(KafkaException(KafkaError(KafkaError.TOPIC_ALREADY_EXISTS, "Topic 'events' exists")))
    assert _outcome(future, 1) == Outcome("Topic 'events' exists", KafkaError.TOPIC_ALREADY_EXISTS)


def test_an_admin_answer_that_never_comes_is_reported_not_raised() -> None:
    assert _outcome(Future(), 0.05) == Outcome("no answer within 0.05s; rerun the Job, or raise --request-timeout-s")
