"""StreamProcessor: the recommendation processor's Deployment, lag HPA, PDB, NetworkPolicy, mesh policy, scrape target and
alert thresholds, from a `modelplane:recommend` section; and the processor in the rendered stacks."""

from collections.abc import Callable
from typing import Any

import pulumi
import pytest
import yaml

from infra.config.recommend import RecommendConfig
from infra.k8s.local import REDIS_LABELS, REDIS_PORT
from infra.k8s.local import SYSTEM_NAMESPACE as LOCAL_NAMESPACE
from infra.k8s.mesh import sidecar_egress
from infra.k8s.namespaces import INFERENCE_NAMESPACE
from infra.k8s.netpol import DNS_NAMESPACE, DNS_POD_LABELS, DNS_PORT, to_pod_identity, to_ports
from infra.k8s.observability import RULES_DIR
from infra.k8s.recommend import SERVICE_ACCOUNT, StreamProcessor
from infra.k8s.streaming import CLUSTER as KAFKA_CLUSTER
from infra.k8s.streaming import NAMESPACE as KAFKA_NAMESPACE
from infra.k8s.streaming import PORT as KAFKA_PORT
from infra.review.engine import render_program
from infra.review.graph import HELM_RELEASE, Graph
from tests.infra.k8s.test_dashboards import metric_names
from tests.support.graph import assert_count, assert_kind_validates, policy_statements, render_variant
from tests.support.netpol import NetworkModel, external, pod, pod_template_labels
from workloads.common import metrics
from workloads.common.settings import REDIS_URL_FILE, SECRETS_DIR
from workloads.common.vocab import NAME_LABEL
from workloads.recommend.settings import ProcessorSettings

DEPLOYMENT = "kubernetes:apps/v1:Deployment"
HPA = "kubernetes:autoscaling/v2:HorizontalPodAutoscaler"
PDB = "kubernetes:policy/v1:PodDisruptionBudget"
NETPOL = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
AUTHZ = "kubernetes:security.istio.io/v1:AuthorizationPolicy"
MONITOR = "kubernetes:monitoring.coreos.com/v1:ServiceMonitor"
RULE = "kubernetes:monitoring.coreos.com/v1:PrometheusRule"
PROMETHEUS = "cluster.local/ns/monitoring/sa/prometheus"
SECTION = {"enabled": True, "minReplicas": 2, "maxReplicas": 6, "targetLagPerReplica": 2000, "cpu": "1", "memory": "1Gi",
           "freshnessBudgetSeconds": 0.5, "lagAlertMessages": 50000, "deadLetterTopic": "recommend-dead"}


def _render(section: dict[str, Any] | None = None, **options: Any) -> Graph:
    config = RecommendConfig.model_validate(section if section is not None else SECTION)
    kwargs: dict[str, Any] = {"kafka_egress": [to_ports(9098), to_pod_identity()], "redis_egress": [to_ports(6379)],
                              "kafka_settings": {"kafka_auth": "iam", "kafka_region": "eu-west-1"}, **options}

    def program() -> None:
        StreamProcessor("recommend-processor", config, image="ghcr.io/modelplane/recommend:0.1.0",
                        bootstrap_servers="b-1.msk:9098,b-2.msk:9098",
                        redis_url=pulumi.Output.secret("rediss://:t@cache:6379/0"), **kwargs)

    return render_program("test", program)


@pytest.fixture(scope="module")
def graph() -> Graph:
    return _render()


def _pod(graph: Graph) -> dict[str, Any]:
    spec: dict[str, Any] = graph.one(DEPLOYMENT).inputs["spec"]["template"]["spec"]
    return spec


def test_the_processor_runs_its_module_with_settings_from_the_section(graph: Graph) -> None:
    container = _pod(graph)["containers"][0]
    assert (container["image"], container["command"]) == (
        "ghcr.io/modelplane/recommend:0.1.0", ["python", "-m", "workloads.recommend.processor"])
    # The env the pod gets, read back by the processor's own settings model (the Secret's file stands in).
    environ = {e["name"]: e["value"] for e in container["env"]}
    assert environ.pop(ProcessorSettings.env_name("redis_url_file")) == f"{SECRETS_DIR}/{REDIS_URL_FILE}"
    settings = ProcessorSettings.parse(["--redis-url", "redis://:t@cache:6379/0"], environ)
    assert (settings.topic, settings.group_id, settings.dead_letter_topic, settings.metrics_port) == (
        "recommend-events", "recommend-processor", "recommend-dead", 9100)
    assert (settings.bootstrap_servers, settings.kafka_auth, settings.kafka_region) == (
        "b-1.msk:9098,b-2.msk:9098", "iam", "eu-west-1")
    pod = graph.one("kubernetes:apps/v1:Deployment").inputs["spec"]["template"]["spec"]
    assert pod["volumes"] == [{"name": "secrets", "projected": {"defaultMode": 0o440, "sources": [
        {"secret": {"name": "recommend-processor-redis", "items": [{"key": "url", "path": REDIS_URL_FILE}]}}]}}]
    assert container["volumeMounts"] == [{"name": "secrets", "mountPath": SECRETS_DIR, "readOnly": True}]
    assert graph.one("kubernetes:core/v1:Secret").inputs["stringData"] == {"url": "[secret]"}


def test_the_pod_is_hardened_sized_and_given_time_to_commit(graph: Graph) -> None:
    deployment = graph.one(DEPLOYMENT).inputs
    assert (deployment["metadata"]["namespace"], deployment["spec"]["replicas"]) == ("inference", 2)
    pod = _pod(graph)
    container = pod["containers"][0]
    assert pod["serviceAccountName"] == "recommend-processor"
    assert pod["securityContext"]["runAsNonRoot"] is True and container["securityContext"]["readOnlyRootFilesystem"]
    assert container["resources"] == {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}}
    # The processor may wait 30 s for dead letters before its last commit; the sidecar drains almost as long.
    assert pod["terminationGracePeriodSeconds"] > 30
    annotation = deployment["spec"]["template"]["metadata"]["annotations"]["proxy.istio.io/config"]
    assert yaml.safe_load(annotation) == {"terminationDrainDuration": "55s",
                                          "proxyMetadata": {"EXIT_ON_ZERO_ACTIVE_CONNECTIONS": "true"}}
    account = graph.one("kubernetes:core/v1:ServiceAccount").inputs
    assert (account["metadata"]["name"], account["automountServiceAccountToken"]) == ("recommend-processor", False)


def test_the_hpa_targets_the_topic_lag_per_replica(graph: Graph) -> None:
    spec = graph.one(HPA).inputs["spec"]
    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "recommend-processor"}
    assert (spec["minReplicas"], spec["maxReplicas"]) == (2, 6)
    assert spec["metrics"] == [{"type": "External", "external": {
        "metric": {"name": metrics.RECOMMEND_CONSUMER_LAG, "selector": {"matchLabels": {"topic": "recommend-events"}}},
        "target": {"type": "AverageValue", "averageValue": "2000"}}}]


def test_without_the_observability_stack_the_hpa_falls_back_to_cpu_and_nothing_scrapes() -> None:
    graph = _render(monitoring=False)
    assert [m["type"] for m in graph.one(HPA).inputs["spec"]["metrics"]] == ["Resource"]
    assert_count(graph, MONITOR, 0)
    assert_count(graph, RULE, 0)
    assert graph.one(NETPOL).inputs["spec"]["ingress"] == []
    # No caller at all is left in the mesh.
    assert graph.one(AUTHZ).inputs["spec"]["rules"] == [{}]


def test_the_pdb_lets_one_replica_go_at_a_time(graph: Graph) -> None:
    assert graph.one(PDB).inputs["spec"] == {"maxUnavailable": 1,
                                             "selector": {"matchLabels": {"app.kubernetes.io/name": "recommend-processor"}}}


def test_network_policy_admits_only_prometheus_and_reaches_only_kafka_redis_and_istiod(
        graph: Graph) -> None:
    spec = graph.one(NETPOL).inputs["spec"]
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    assert spec["ingress"] == [{"from": [{
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}}],
        "ports": [{"protocol": "TCP", "port": 9100}]}]
    # DNS is the namespace's allow-dns policy; Kafka and Redis are the rules the stack passes, in order.
    assert spec["egress"] == [to_ports(9098), to_pod_identity(), to_ports(6379), sidecar_egress()]


def test_off_the_mesh_the_policy_drops_istiod() -> None:
    graph = _render(mesh=False, kafka_egress=[to_ports(9092)], kafka_settings={})
    assert graph.one(NETPOL).inputs["spec"]["egress"] == [to_ports(9092), to_ports(6379)]
    assert_count(graph, AUTHZ, 0)
    assert "scheme" not in graph.one(MONITOR).inputs["spec"]["endpoints"][0]


def test_the_mesh_denies_everything_but_prometheus_reading_metrics(graph: Graph) -> None:
    spec = graph.one(AUTHZ).inputs["spec"]
    assert (spec["action"], spec["selector"]) == ("DENY", {"matchLabels": {"app.kubernetes.io/name": "recommend-processor"}})
    assert spec["rules"] == [{"from": [{"source": {"notPrincipals": [PROMETHEUS]}}]},
                             {"to": [{"operation": {"notPorts": ["9100"]}}]},
                             {"to": [{"operation": {"notPaths": ["/metrics"]}}]}]


def test_prometheus_scrapes_the_metrics_port_over_mtls(graph: Graph) -> None:
    service = graph.one("kubernetes:core/v1:Service").inputs["spec"]
    assert service["ports"] == [{"name": "http", "port": 9100, "targetPort": "metrics", "protocol": "TCP"}]
    monitor = graph.one(MONITOR).inputs["spec"]
    assert monitor["selector"]["matchLabels"]["app.kubernetes.io/name"] == "recommend-processor"
    assert monitor["endpoints"][0]["scheme"] == "https" and monitor["endpoints"][0]["port"] == "http"


def test_the_alert_thresholds_are_recorded_from_the_section(graph: Graph) -> None:
    rules = graph.one(RULE).inputs["spec"]["groups"][0]["rules"]
    labels = {"namespace": "inference", "topic": "recommend-events"}
    assert rules == [{"record": metrics.RECOMMEND_FRESHNESS_BUDGET, "expr": "vector(0.5)", "labels": labels},
                     {"record": metrics.RECOMMEND_LAG_THRESHOLD, "expr": "vector(50000)", "labels": labels}]


def test_the_alert_rules_compare_with_the_recorded_thresholds() -> None:
    doc = yaml.safe_load((RULES_DIR / "recommend.yaml").read_text())
    exprs = {rule["alert"]: rule["expr"] for group in doc["groups"] for rule in group["rules"]}
    assert metrics.RECOMMEND_LAG_THRESHOLD in metric_names(exprs["RecommendConsumerLagGrowing"])
    assert metrics.RECOMMEND_FRESHNESS_BUDGET in metric_names(exprs["RecommendFeatureFreshnessOverBudget"])


def test_unknown_kafka_settings_are_refused(mocked_runtime: None) -> None:
    with pytest.raises(pulumi.InputPropertiesError) as info:
        StreamProcessor("p", RecommendConfig(enabled=True), image="i:1", bootstrap_servers="b:9092", redis_url="redis://r",
                        kafka_egress=[], redis_egress=[], kafka_settings={"kafka_password": "x"})
    [error] = info.value.errors or []
    assert error["property_path"] == "kafka_settings"
    assert error["reason"].startswith("['kafka_password'] are not ProcessorSettings fields")


@pytest.mark.parametrize("kind", ["Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget", "NetworkPolicy",
                                  "Service", "ServiceAccount", "Secret"])
def test_kinds_validate(graph: Graph, kind: str) -> None:
    assert_kind_validates(graph, kind)


def test_prometheus_adapter_serves_the_summed_lag_as_an_external_metric(prod: Graph) -> None:
    adapter = next(r.inputs for r in prod.of_type(HELM_RELEASE) if r.inputs["chart"] == "prometheus-adapter")
    assert adapter["values"]["rules"]["external"] == [{
        "seriesQuery": 'modelplane_recommend_consumer_lag_messages{namespace!="",topic!=""}',
        "resources": {"overrides": {"namespace": {"resource": "namespace"}}},
        "name": {"matches": "^modelplane_recommend_consumer_lag_messages$",
                 "as": "modelplane_recommend_consumer_lag_messages"},
        "metricsQuery": "sum(<<.Series>>{<<.LabelMatchers>>}) by (topic)"}]


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_aws_stacks_run_the_processor_with_an_identity_that_consumes_only_its_topic_and_group(
        stack: str, stack_graph: Callable[[str], Graph]) -> None:
    graph = stack_graph(stack)
    hpa = graph.one(HPA, "recommend-processor-hpa").inputs["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == {"dev": (1, 6), "prod": (2, 12)}[stack]
    assert graph.one("aws:eks/podIdentityAssociation:PodIdentityAssociation", "recommend-processor-association").inputs[
        "serviceAccount"] == "recommend-processor"
    statements = [s for urn, s in policy_statements(graph) if "recommend-processor-policy" in urn]
    resources = [r for s in statements for r in (s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]])]
    assert sorted(r.split(":")[5].split("/")[0] for r in resources) == ["cluster", "group", "topic"]
    assert [r.rsplit("/", 1)[1] for r in resources if ":topic/" in r or ":group/" in r] == [
        "recommend-events", "recommend-processor"]
    assert not [a for s in statements for a in s["Action"] if a in ("kafka-cluster:WriteData", "kafka-cluster:*")]
    pod = graph.one(DEPLOYMENT, "recommend-processor-deployment").inputs["spec"]["template"]["spec"]
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert env[ProcessorSettings.env_name("kafka_auth")] == "iam"


def test_the_prod_processor_alerts_on_prod_thresholds(prod: Graph) -> None:
    rules = prod.one(RULE, "recommend-processor-thresholds").inputs["spec"]["groups"][0]["rules"]
    assert [r["expr"] for r in rules] == ["vector(1)", "vector(100000)"]


def test_a_dead_letter_topic_adds_a_produce_grant_on_it_alone() -> None:
    graph = render_variant("dev", {
        "modelplane:streaming": {"topics": [{"name": "recommend-events", "partitions": 6, "replicationFactor": 2,
                                             "minInsyncReplicas": 1},
                                            {"name": "recommend-dead", "partitions": 1, "replicationFactor": 2,
                                             "minInsyncReplicas": 1}]},
        "modelplane:recommend": {"deadLetterTopic": "recommend-dead"}})
    statements = [s for urn, s in policy_statements(graph) if "recommend-processor-policy" in urn]
    writes = [s for s in statements if "kafka-cluster:WriteData" in s["Action"]]
    assert [r.rsplit("/", 1)[1] for s in writes for r in s["Resource"]] == ["recommend-dead"]


def test_local_runs_the_processor_on_the_in_cluster_broker_and_redis_scaling_on_cpu(
        stack_graph: Callable[[str], Graph]) -> None:
    graph = stack_graph("local")
    pod = graph.one(DEPLOYMENT, "recommend-processor-deployment").inputs["spec"]["template"]["spec"]
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert env[ProcessorSettings.env_name("kafka_auth")] == "none"
    assert ProcessorSettings.env_name("kafka_region") not in env
    # No monitoring stack on local: no lag metric, no scrape target, no AWS credentials to fetch.
    assert [m["type"] for m in graph.one(HPA, "recommend-processor-hpa").inputs["spec"]["metrics"]] == ["Resource"]
    assert not [r for r in graph.resources if r.type == MONITOR and "recommend" in r.name]


def test_on_local_the_processor_reaches_its_redis_and_kafka_only(stack_graph: Callable[[str], Graph]) -> None:
    graph = stack_graph("local")
    model = NetworkModel(graph)
    processor = pod(INFERENCE_NAMESPACE, pod_template_labels(graph, "Deployment", SERVICE_ACCOUNT), "10.0.2.21")
    redis = pod(LOCAL_NAMESPACE, REDIS_LABELS, "10.0.6.60")
    broker = pod(KAFKA_NAMESPACE, {"strimzi.io/cluster": KAFKA_CLUSTER}, "10.0.7.70")
    assert model.egress_allows(processor, redis, REDIS_PORT)
    assert model.egress_allows(processor, broker, KAFKA_PORT)
    assert model.egress_allows(processor, pod(DNS_NAMESPACE, DNS_POD_LABELS, "10.0.0.2"), DNS_PORT, "UDP")
    # Not just anything on those ports: another pod on Redis's or Kafka's port, or a Kafka pod on Redis's.
    other = pod(LOCAL_NAMESPACE, {NAME_LABEL: "other"}, "10.0.6.61")
    assert not model.egress_allows(processor, other, REDIS_PORT)
    assert not model.egress_allows(processor, pod(INFERENCE_NAMESPACE, {}, "10.0.2.22"), KAFKA_PORT)
    assert not model.egress_allows(processor, broker, REDIS_PORT)
    assert not model.egress_allows(processor, external("203.0.113.9"), REDIS_PORT)


def test_no_processor_unless_enabled() -> None:
    graph = render_variant("dev", {"modelplane:recommend": {"enabled": False}})
    assert not [r for r in graph.resources if "recommend-processor" in r.name]
