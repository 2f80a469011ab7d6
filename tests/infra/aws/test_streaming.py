"""Streaming: MSK across the private subnets, TLS only, IAM clients only, its own KMS key, broker logs, and
least-privilege kafka-cluster grants on topic and group ARNs."""

import json
from collections.abc import Callable
from typing import Any

import pytest

from infra import versions
from infra.aws.identity import WorkloadIdentity
from infra.aws.streaming import Streaming
from infra.config.streaming import StreamingConfig
from infra.review.engine import render_program
from infra.review.graph import Graph
from tests.support.graph import assert_count, assert_has_props, policy_statements

CLUSTER = "aws:msk/cluster:Cluster"
CONFIGURATION = "aws:msk/configuration:Configuration"
INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
TOPIC_ARN = "arn:aws:kafka:us-east-1:123456789012:topic/modelplane-test-msk/"
GROUP_ARN = "arn:aws:kafka:us-east-1:123456789012:group/modelplane-test-msk/"


def _render(section: dict[str, Any], grants: Callable[[Streaming], list[Any]] | None = None) -> Graph:
    config = StreamingConfig.model_validate(section)

    def program() -> None:
        streaming = Streaming("msk", config, vpc_id="vpc-1", subnet_ids=["subnet-a", "subnet-b", "subnet-c"],
                              allowed_security_group_ids=["sg-eks"], protect=False)
        if grants:
            WorkloadIdentity("app", cluster_name="modelplane-test", namespace="apps", service_account="app",
                             grants=grants(streaming))
    return render_program("test", program)


def _app_statements(graph: Graph) -> list[dict[str, Any]]:
    return [s for urn, s in policy_statements(graph) if urn.endswith("::app-policy")]


def test_defaults_render_a_tls_only_iam_only_cluster_across_three_zones() -> None:
    graph = _render({})
    key_arn = graph.one("aws:kms/key:Key", "msk-kms")
    assert_has_props(graph, CLUSTER, {
        "clusterName": "modelplane-test-msk", "kafkaVersion": versions.MSK_KAFKA_VERSION, "numberOfBrokerNodes": 3,
        "brokerNodeGroupInfo": {"clientSubnets": ["subnet-a", "subnet-b", "subnet-c"],
                                "instanceType": "kafka.m7g.large", "storageInfo": {"ebsStorageInfo": {"volumeSize": 100}},
                                "connectivityInfo": {"publicAccess": {"type": "DISABLED"}}},
        "clientAuthentication": {"sasl": {"iam": True, "scram": False}, "unauthenticated": False},
        "encryptionInfo": {"encryptionInTransit": {"clientBroker": "TLS", "inCluster": True}},
        "loggingInfo": {"brokerLogs": {"cloudwatchLogs": {"enabled": True, "logGroup": "/aws/msk/modelplane-test-msk"}}},
        "enhancedMonitoring": "PER_BROKER", "configurationInfo": {"revision": 1},
    })
    cluster = graph.one(CLUSTER, "msk-kafka").inputs
    assert cluster["encryptionInfo"]["encryptionAtRestKmsKeyArn"].startswith("arn:aws:kms:us-east-1:")
    assert cluster["configurationInfo"]["arn"].startswith(
        "arn:aws:kafka:us-east-1:123456789012:configuration/msk-config-")
    assert key_arn.inputs["enableKeyRotation"] is True


def test_broker_configuration_forbids_auto_created_topics_and_unclean_elections() -> None:
    props = _render({}).one(CONFIGURATION, "msk-config").inputs
    assert props["kafkaVersions"] == [versions.MSK_KAFKA_VERSION]
    # Auto-named: a version bump replaces it, and a fixed name would collide with the old one (ConflictException).
    assert "name" not in props
    assert props["serverProperties"].splitlines() == [
        "auto.create.topics.enable=false", "default.replication.factor=3", "min.insync.replicas=2",
        "unclean.leader.election.enable=false"]


def test_two_brokers_replicate_twice_with_one_in_sync() -> None:
    graph = _render({"zones": 2, "topics": [{"name": "t", "replicationFactor": 2, "minInsyncReplicas": 1}]})
    assert_has_props(graph, CLUSTER, {"numberOfBrokerNodes": 2,
                                      "brokerNodeGroupInfo": {"clientSubnets": ["subnet-a", "subnet-b"]}})
    properties = graph.one(CONFIGURATION, "msk-config").inputs["serverProperties"]
    assert "default.replication.factor=2\nmin.insync.replicas=1\n" in properties


def test_sizes_and_monitoring_come_from_the_section() -> None:
    graph = _render({"brokerInstanceType": "kafka.m7g.xlarge", "brokersPerZone": 2, "volumeSizeGb": 500,
                     "enhancedMonitoring": "PER_TOPIC_PER_PARTITION", "brokerLogRetentionDays": 90,
                     "kmsDeletionWindowDays": 7})
    assert_has_props(graph, CLUSTER, {
        "numberOfBrokerNodes": 6, "enhancedMonitoring": "PER_TOPIC_PER_PARTITION",
        "brokerNodeGroupInfo": {"instanceType": "kafka.m7g.xlarge",
                                "storageInfo": {"ebsStorageInfo": {"volumeSize": 500}}}})
    assert_has_props(graph, "aws:cloudwatch/logGroup:LogGroup", {"retentionInDays": 90})
    assert_has_props(graph, "aws:kms/key:Key", {"deletionWindowInDays": 7})


def test_only_the_sasl_iam_port_is_open_and_only_to_the_cluster() -> None:
    graph = _render({})
    assert_count(graph, INGRESS, 1)
    assert_has_props(graph, INGRESS, {"referencedSecurityGroupId": "sg-eks", "ipProtocol": "tcp",
                                      "fromPort": 9098, "toPort": 9098})
    assert_has_props(graph, CLUSTER, {"openMonitoring": {"prometheus": {
        "jmxExporter": {"enabledInBroker": False}, "nodeExporter": {"enabledInBroker": False}}}})


def test_open_monitoring_opens_the_exporter_ports_to_the_cluster_too() -> None:
    graph = _render({"openMonitoring": True})
    assert sorted(r.inputs["fromPort"] for r in graph.of_type(INGRESS)) == [9098, 11001, 11002]
    assert_has_props(graph, CLUSTER, {"openMonitoring": {"prometheus": {
        "jmxExporter": {"enabledInBroker": True}, "nodeExporter": {"enabledInBroker": True}}}})


def test_key_lets_cloudwatch_logs_encrypt_the_broker_log_group_only() -> None:
    graph = _render({})
    group = graph.one("aws:cloudwatch/logGroup:LogGroup", "msk-broker-logs").inputs
    key = graph.one("aws:kms/key:Key", "msk-kms").inputs
    assert group["kmsKeyId"] == graph.one(CLUSTER, "msk-kafka").inputs["encryptionInfo"]["encryptionAtRestKmsKeyArn"]
    statements = {s["Sid"]: s for s in json.loads(key["policy"])["Statement"]}
    logs = statements["CloudWatchLogsEncrypts"]
    assert logs["Principal"] == {"Service": "logs.us-east-1.amazonaws.com"}
    assert logs["Condition"] == {"ArnLike": {"kms:EncryptionContext:aws:logs:arn":
                                               "arn:aws:logs:us-east-1:123456789012:log-group:/aws/msk/modelplane-test-msk"}}
    assert statements["AccountAdministers"]["Principal"] == {"AWS": "arn:aws:iam::123456789012:root"}


def test_the_cluster_key_has_an_alias_like_the_other_log_keys() -> None:
    graph = _render({})
    alias = graph.one("aws:kms/alias:Alias", "msk-kms").inputs
    assert alias["name"] == "alias/modelplane-test-msk-msk"
    key_arn = graph.one(CLUSTER, "msk-kafka").inputs["encryptionInfo"]["encryptionAtRestKmsKeyArn"]
    assert alias["targetKeyId"] and key_arn.endswith(f":key/{alias['targetKeyId']}")


def test_grant_produce_writes_idempotently_to_its_topics_only() -> None:
    statements = _app_statements(_render({}, lambda s: [s.grant_produce(["events", "clicks"])]))
    cluster = next(s for s in statements if "kafka-cluster:Connect" in s["Action"])
    assert cluster["Action"] == ["kafka-cluster:Connect", "kafka-cluster:WriteDataIdempotently"]
    assert cluster["Resource"].startswith("arn:aws:kafka:us-east-1:123456789012:cluster/modelplane-test-msk/")
    uuid = cluster["Resource"].rsplit("/", 1)[1]
    topics = next(s for s in statements if "kafka-cluster:WriteData" in s["Action"])
    assert topics["Action"] == ["kafka-cluster:DescribeTopic", "kafka-cluster:WriteData"]
    assert topics["Resource"] == [f"{TOPIC_ARN}{uuid}/clicks", f"{TOPIC_ARN}{uuid}/events"]
    assert not any("kafka-cluster:ReadData" in s["Action"] for s in statements)


def test_grant_consume_reads_its_topics_in_its_groups_only() -> None:
    statements = _app_statements(_render({}, lambda s: [s.grant_consume(["events"], ["processor"])]))
    by_action = {tuple(s["Action"]): s["Resource"] for s in statements}
    uuid = by_action[("kafka-cluster:Connect",)].rsplit("/", 1)[1]
    assert by_action[("kafka-cluster:DescribeTopic", "kafka-cluster:ReadData")] == [f"{TOPIC_ARN}{uuid}/events"]
    assert by_action[("kafka-cluster:DescribeGroup", "kafka-cluster:AlterGroup")] == [f"{GROUP_ARN}{uuid}/processor"]
    assert len(by_action) == 3


def test_grant_manage_topics_creates_and_alters_but_never_deletes() -> None:
    statements = _app_statements(_render({}, lambda s: [s.grant_manage_topics(["events"])]))
    actions = {a for s in statements for a in s["Action"]}
    assert actions == {"kafka-cluster:Connect", "kafka-cluster:CreateTopic",
                       "kafka-cluster:DescribeTopic", "kafka-cluster:AlterTopic",
                       "kafka-cluster:DescribeTopicDynamicConfiguration",
                       "kafka-cluster:AlterTopicDynamicConfiguration"}
    cluster = next(s for s in statements if "kafka-cluster:Connect" in s["Action"])
    assert cluster["Action"] == ["kafka-cluster:Connect"]
    topic = next(s for s in statements if "kafka-cluster:CreateTopic" in s["Action"])
    assert len(topic["Resource"]) == 1 and topic["Resource"][0].startswith(TOPIC_ARN)
    assert topic["Resource"][0].endswith("/events")


@pytest.mark.parametrize("names", [[], [""], "events"])
def test_grants_refuse_an_empty_or_malformed_name_list(names: Any, mocked_runtime: None) -> None:
    streaming = Streaming("msk", StreamingConfig(), vpc_id="vpc-1", subnet_ids=["a", "b", "c"],
                          allowed_security_group_ids=[], protect=False)
    with pytest.raises(ValueError, match="topics must be a non-empty list of non-empty names"):
        streaming.grant_produce(names)


def test_fewer_subnets_than_zones_is_refused(mocked_runtime: None) -> None:
    with pytest.raises(ValueError, match=r"streaming\.zones is 3 but only 2 subnets were given"):
        Streaming("msk", StreamingConfig(), vpc_id="vpc-1", subnet_ids=["a", "b"], allowed_security_group_ids=[],
                  protect=False)


def test_prod_stack_renders_msk_with_its_settings(prod: Graph) -> None:
    assert_has_props(prod, CLUSTER, {
        "clusterName": "modelplane-prod-streaming", "numberOfBrokerNodes": 3, "enhancedMonitoring": "PER_TOPIC_PER_BROKER",
        "brokerNodeGroupInfo": {"instanceType": "kafka.m7g.large", "storageInfo": {"ebsStorageInfo": {"volumeSize": 500}}},
        "clientAuthentication": {"sasl": {"iam": True, "scram": False}, "unauthenticated": False},
        "encryptionInfo": {"encryptionInTransit": {"clientBroker": "TLS", "inCluster": True}},
    })
    assert len(prod.one(CLUSTER, "streaming-kafka").inputs["brokerNodeGroupInfo"]["clientSubnets"]) == 3
    assert_has_props(prod, "aws:cloudwatch/logGroup:LogGroup",
                     {"name": "/aws/msk/modelplane-prod-streaming", "retentionInDays": 90})
    # Admitted from the EKS cluster security group only, the one the cache admits too.
    rules = [r.inputs for r in prod.of_type(INGRESS) if r.name.startswith("streaming-")]
    assert [(r["fromPort"], r["toPort"]) for r in rules] == [(9098, 9098)]
    cache = prod.one(INGRESS, "cache-from-0").inputs
    assert rules[0]["referencedSecurityGroupId"] == cache["referencedSecurityGroupId"]


def test_dev_stack_runs_two_small_brokers(dev: Graph) -> None:
    assert_has_props(dev, CLUSTER, {"numberOfBrokerNodes": 2, "enhancedMonitoring": "DEFAULT",
                                    "brokerNodeGroupInfo": {"instanceType": "kafka.t3.small",
                                                            "storageInfo": {"ebsStorageInfo": {"volumeSize": 20}}}})
