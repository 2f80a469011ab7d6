"""Kafka in Kubernetes: the topics Job (local and dev) and the local Strimzi broker, checked against the vendored
Strimzi 1.2.0 CRDs and chart values."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pulumi
import pytest
import yaml

from infra import versions
from infra.config.streaming import StreamingConfig, TopicConfig
from infra.k8s.streaming import KafkaTopics, LocalKafka
from infra.review.engine import render_program
from infra.review.graph import HELM_RELEASE, Graph
from tests.support.conformance import unknown_value_paths
from tests.support.graph import assert_kind_validates, policy_statements, render_variant
from workloads.recommend.topic_settings import TopicsSettings

STRIMZI = Path(__file__).resolve().parents[2] / "conformance" / "strimzi" / versions.STRIMZI_VERSION
JOB = "kubernetes:batch/v1:Job"


def _crd_schema(file: str) -> dict[str, Any]:
    """The CRD's openAPIV3Schema, made strict: the API server prunes unknown fields, so a misspelt key would
    silently vanish; here it fails (maps marked x-kubernetes-preserve-unknown-fields stay open)."""
    (version,) = yaml.safe_load((STRIMZI / file).read_text())["spec"]["versions"]
    assert version["name"] == "v1" and version["served"]

    def strict(node: Any) -> Any:
        if isinstance(node, dict):
            node = {k: strict(v) for k, v in node.items()}
            if "properties" in node and "additionalProperties" not in node and \
                    not node.get("x-kubernetes-preserve-unknown-fields"):
                node["additionalProperties"] = False
        elif isinstance(node, list):
            node = [strict(v) for v in node]
        return node

    schema: dict[str, Any] = strict(version["schema"]["openAPIV3Schema"])
    return schema


def _custom(graph: Graph, kind: str) -> dict[str, Any]:
    (found,) = [r.inputs for r in graph.kubernetes_objects() if r.inputs.get("kind") == kind]
    return found


def _topics_job(graph: Graph) -> dict[str, Any]:
    (job,) = [r.inputs for r in graph.of_type(JOB) if r.inputs["metadata"]["name"].startswith("kafka-topics-")]
    return job


def _env(job: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}


def _topic(**changes: Any) -> TopicConfig:
    return TopicConfig.model_validate({"name": "events", "partitions": 3, "replicationFactor": 1,
                                       "minInsyncReplicas": 1, "retentionHours": 24, **changes})


def _render_topics(*topics: TopicConfig) -> Graph:
    return render_program("local", lambda: KafkaTopics(
        "kafka-topics", list(topics), bootstrap_servers="k:9092", auth="none", region=None,
        namespace="inference", service_account="kafka-topics", image="ghcr.io/modelplane/recommend:0.1.0") and None)


@pytest.fixture(scope="module")
def local(stack_graph: Callable[[str], Graph]) -> Graph:
    return stack_graph("local")


def test_local_runs_the_pinned_strimzi_operator_with_restricted_operands(local: Graph) -> None:
    (release,) = [r.inputs for r in local.of_type(HELM_RELEASE) if r.inputs["name"] == "strimzi-kafka-operator"]
    assert (release["chart"], release["version"], release["namespace"]) == (
        "oci://quay.io/strimzi-helm/strimzi-kafka-operator", "1.2.0", "kafka")
    assert {"name": "STRIMZI_POD_SECURITY_PROVIDER_CLASS", "value": "restricted"} in release["values"]["extraEnvs"]
    namespace = next(r.inputs for r in local.kubernetes_objects()
                     if r.inputs.get("kind") == "Namespace" and r.inputs["metadata"]["name"] == "kafka")
    kubernetes_validate.validate(namespace, "1.35", strict=True)
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_operator_values_exist_in_the_vendored_chart(local: Graph) -> None:
    chart = yaml.safe_load((STRIMZI / "values.yaml").read_text())
    (release,) = [r.inputs for r in local.of_type(HELM_RELEASE) if r.inputs["name"] == "strimzi-kafka-operator"]
    assert unknown_value_paths(release["values"], chart) == []
    assert chart["defaultImageTag"] == versions.STRIMZI_VERSION  # the vendored values are the pinned release's


@pytest.mark.parametrize(("kind", "file"), [("Kafka", "040-Crd-kafka.yaml"),
                                            ("KafkaNodePool", "045-Crd-kafkanodepool.yaml")])
def test_strimzi_resources_validate_against_the_vendored_crds(local: Graph, kind: str, file: str) -> None:
    resource = _custom(local, kind)
    assert resource["apiVersion"] == "kafka.strimzi.io/v1"
    jsonschema.validate(resource, _crd_schema(file))


def test_the_crd_check_catches_a_misspelt_key(local: Graph) -> None:
    broken = json.loads(json.dumps(_custom(local, "Kafka")))
    broken["spec"]["kafka"]["listeners"][0]["netwrokPolicyPeers"] = []
    with pytest.raises(jsonschema.ValidationError, match="netwrokPolicyPeers"):
        jsonschema.validate(broken, _crd_schema("040-Crd-kafka.yaml"))


def test_local_kafka_is_one_kraft_node_on_the_configured_volume(local: Graph) -> None:
    kafka, pool = _custom(local, "Kafka"), _custom(local, "KafkaNodePool")
    assert (kafka["spec"]["kafka"]["version"], kafka["spec"]["kafka"]["metadataVersion"]) == ("4.3.1", "4.3-IV0")
    assert kafka["spec"]["kafka"]["config"]["auto.create.topics.enable"] is False
    assert pool["metadata"]["labels"]["strimzi.io/cluster"] == kafka["metadata"]["name"] == "modelplane"
    assert (pool["spec"]["replicas"], sorted(pool["spec"]["roles"])) == (1, ["broker", "controller"])
    assert pool["spec"]["storage"]["volumes"] == [{"id": 0, "type": "persistent-claim", "size": "10Gi",
                                                  "kraftMetadata": "shared", "deleteClaim": True}]


def test_zero_local_storage_keeps_the_log_on_an_empty_dir() -> None:
    graph = render_program("local", lambda: LocalKafka(
        "kafka", StreamingConfig.model_validate({"enabled": True, "localStorageGb": 0})) and None)
    pool = _custom(graph, "KafkaNodePool")
    assert pool["spec"]["storage"] == {"type": "ephemeral"}
    jsonschema.validate(pool, _crd_schema("045-Crd-kafkanodepool.yaml"))


def test_the_plain_listener_admits_only_the_workload_namespaces(local: Graph) -> None:
    (listener,) = _custom(local, "Kafka")["spec"]["kafka"]["listeners"]
    assert (listener["name"], listener["port"], listener["type"], listener["tls"]) == ("plain", 9092, "internal", False)
    assert [p["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
            for p in listener["networkPolicyPeers"]] == ["inference", "training"]


def test_local_topics_job_reaches_strimzis_bootstrap_service_in_plaintext(local: Graph) -> None:
    job = _topics_job(local)
    env = _env(job)
    assert env["MODELPLANE_KAFKA_TOPICS_BOOTSTRAP_SERVERS"] == "modelplane-kafka-bootstrap.kafka.svc:9092"
    assert env["MODELPLANE_KAFKA_TOPICS_KAFKA_AUTH"] == "none" and "MODELPLANE_KAFKA_TOPICS_KAFKA_REGION" not in env
    assert job["spec"]["template"]["spec"]["containers"][0]["image"] == "ghcr.io/modelplane/recommend:0.1.0"
    assert job["metadata"]["namespace"] == "inference"


def test_topics_job_env_is_what_the_workload_parses_into_the_stacks_topics(local: Graph) -> None:
    settings = TopicsSettings.parse([], _env(_topics_job(local)))
    assert [t.model_dump(by_alias=True) for t in settings.topics] == [
        {"name": "recommend-events", "partitions": 3, "replicationFactor": 1, "retentionHours": 24,
         "minInsyncReplicas": 1}]
    assert settings.connect_timeout_s == 600


def test_topics_job_pod_is_hardened_bounded_and_outside_the_mesh(local: Graph) -> None:
    job = _topics_job(local)
    assert (job["spec"]["backoffLimit"], job["spec"]["ttlSecondsAfterFinished"]) == (3, 86400)
    template = job["spec"]["template"]
    assert template["metadata"]["annotations"] == {"sidecar.istio.io/inject": "false"}
    pod = template["spec"]
    assert (pod["serviceAccountName"], pod["restartPolicy"], pod["automountServiceAccountToken"]) == (
        "kafka-topics", "Never", False)
    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    assert container["command"] == ["python", "-m", "workloads.recommend.topics"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["resources"]["limits"] == {"cpu": "250m", "memory": "256Mi"}
    assert_kind_validates(local, "Job")
    assert_kind_validates(local, "ServiceAccount")
    accounts = [r.inputs for r in local.of_type("kubernetes:core/v1:ServiceAccount")
                if r.inputs["metadata"]["name"] == "kafka-topics"]
    assert [(a["metadata"]["namespace"], a["automountServiceAccountToken"]) for a in accounts] == [("inference", False)]


def test_a_topic_change_renames_the_job_so_it_runs_again() -> None:
    names = [_topics_job(_render_topics(*topics))["metadata"]["name"]
             for topics in ([_topic()], [_topic()], [_topic(partitions=6)], [_topic(), _topic(name="dead")])]
    assert names[0] == names[1]
    assert len(set(names)) == 3


def test_iam_topics_job_needs_a_region(mocked_runtime: None) -> None:
    with pytest.raises(pulumi.InputPropertiesError) as info:
        KafkaTopics("bad", [_topic()], bootstrap_servers="b:9098", auth="iam", region=None, namespace="inference",
                    service_account="kafka-topics", image="ghcr.io/modelplane/recommend:0.1.0")
    assert [(d["property_path"], d["reason"]) for d in info.value.errors] == [
        ("region", "is required when auth is 'iam' (the MSK cluster's region)")]


def test_dev_topics_job_signs_in_to_msk_with_iam(dev: Graph) -> None:
    env = _env(_topics_job(dev))
    assert env["MODELPLANE_KAFKA_TOPICS_KAFKA_AUTH"] == "iam"
    assert env["MODELPLANE_KAFKA_TOPICS_KAFKA_REGION"] == "us-east-1"
    assert all(b.endswith(":9098") for b in env["MODELPLANE_KAFKA_TOPICS_BOOTSTRAP_SERVERS"].split(","))
    assert TopicsSettings.parse([], env).topics[0].replication_factor == 2


def test_dev_topics_job_identity_may_manage_only_the_declared_topics(dev: Graph) -> None:
    (association,) = [r.inputs for r in dev.of_type("aws:eks/podIdentityAssociation:PodIdentityAssociation")
                      if r.inputs["serviceAccount"] == "kafka-topics"]
    assert association["namespace"] == "inference"
    statements = [s for urn, s in policy_statements(dev) if "kafka-topics" in urn]
    topic_resources = [r for s in statements if "kafka-cluster:CreateTopic" in s["Action"] for r in s["Resource"]]
    assert [r.rsplit("/", 1)[-1] for r in topic_resources] == ["recommend-events"]
    assert not any(a.startswith("kafka-cluster:Delete") for s in statements for a in s["Action"])


def test_local_without_streaming_has_no_broker_and_no_topics_job() -> None:
    graph = render_variant("local", {"modelplane:streaming": None, "modelplane:recommend": None})
    assert not [r for r in graph.resources if r.type.startswith("modelplane:streaming:")]
    assert not [r for r in graph.of_type(JOB) if r.inputs["metadata"]["name"].startswith("kafka-topics-")]
