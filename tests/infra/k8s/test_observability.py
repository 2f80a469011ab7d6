"""Observability: pinned kube-prometheus-stack, rules and dashboards from the repo, mTLS scraping, custom metrics."""

import json
from collections.abc import Callable
from typing import Any

import pytest

from infra import versions
from infra.config.platform import ObservabilityConfig
from infra.k8s.observability import DASHBOARDS_DIR, RULES_DIR, Observability, load_rule_files
from infra.review.engine import render_program
from infra.review.graph import HELM_RELEASE, Graph
from tests.support.graph import assert_count, render_variant
from workloads.common import metrics

RULE = "kubernetes:monitoring.coreos.com/v1:PrometheusRule"
SERVICE_MONITOR = "kubernetes:monitoring.coreos.com/v1:ServiceMonitor"
POD_MONITOR = "kubernetes:monitoring.coreos.com/v1:PodMonitor"
CONFIG_MAP = "kubernetes:core/v1:ConfigMap"
STORAGE_CLASS = "kubernetes:storage.k8s.io/v1:StorageClass"
AUTHZ = "kubernetes:security.istio.io/v1:AuthorizationPolicy"


def _release(graph: Graph, chart: str) -> dict[str, Any]:
    found = [r.inputs for r in graph.of_type(HELM_RELEASE) if r.inputs["chart"] == chart]
    assert len(found) == 1, f"expected one {chart} release, found {len(found)}"
    return found[0]


def _prometheus_spec(graph: Graph) -> dict[str, Any]:
    spec: dict[str, Any] = _release(graph, "kube-prometheus-stack")["values"]["prometheus"]["prometheusSpec"]
    return spec


def _dashboards(graph: Graph) -> list[dict[str, Any]]:
    return [r.inputs for r in graph.of_type(CONFIG_MAP) if r.inputs["metadata"]["name"].startswith("modelplane-dashboard-")]


def _render(config: dict[str, Any]) -> Graph:
    """One Observability built from the section `config` (as the stack config parses it), on its own."""
    def program() -> None:
        Observability("observability", ObservabilityConfig.model_validate(config), storage_class=None,
                      create_storage_class=False, mesh_scraping=False)

    return render_program("test", program)


def test_observability_defaults() -> None:
    graph = _render({})
    values = _release(graph, "kube-prometheus-stack")["values"]
    assert (values["alertmanager"], values["grafana"]["enabled"]) == ({"enabled": True}, True)
    spec = values["prometheus"]["prometheusSpec"]
    assert spec["retention"] == "15d"
    assert "retentionSize" not in spec
    # 50 GiB on the cluster's default StorageClass; no class of our own and no certificate sidecar.
    assert spec["storageSpec"] == {"volumeClaimTemplate": {"spec": {
        "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "50Gi"}}}}}
    assert_count(graph, STORAGE_CLASS, 0)
    assert "podMetadata" not in spec
    assert {r.inputs["chart"] for r in graph.of_type(HELM_RELEASE)} == {"kube-prometheus-stack", "prometheus-adapter"}


def test_kube_prometheus_stack_is_pinned_with_alertmanager_and_grafana_on(prod: Graph) -> None:
    stack = _release(prod, "kube-prometheus-stack")
    assert (stack["name"], stack["namespace"], stack["version"]) == (
        "kube-prometheus-stack", "monitoring", versions.KUBE_PROMETHEUS_STACK_VERSION)
    assert stack["repositoryOpts"] == {"repo": versions.PROMETHEUS_COMMUNITY_REPO}
    assert stack["values"]["alertmanager"]["enabled"] is True  # routing: tests/infra/k8s/test_h4_alerting.py
    assert stack["values"]["grafana"]["enabled"] is True


def test_prometheus_selects_every_monitor_and_rule_in_the_cluster(prod: Graph) -> None:
    spec = _prometheus_spec(prod)
    flags = {k: v for k, v in spec.items() if k.endswith("SelectorNilUsesHelmValues")}
    assert flags == {f"{kind}SelectorNilUsesHelmValues": False
                     for kind in ("rule", "serviceMonitor", "podMonitor", "probe", "scrapeConfig")}


def test_prometheus_keeps_its_data_on_an_encrypted_gp3_volume(prod: Graph) -> None:
    spec = _prometheus_spec(prod)
    assert spec["retention"] == "15d"
    assert "retentionSize" not in spec
    assert spec["storageSpec"] == {"volumeClaimTemplate": {"spec": {
        "storageClassName": "gp3", "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "50Gi"}}}}}
    storage_class = prod.one(STORAGE_CLASS).inputs
    assert storage_class["metadata"]["name"] == "gp3"
    assert storage_class["provisioner"] == "ebs.csi.aws.com"
    assert storage_class["parameters"] == {"type": "gp3", "encrypted": "true", "csi.storage.k8s.io/fstype": "ext4"}
    assert storage_class["volumeBindingMode"] == "WaitForFirstConsumer"


def test_retention_and_storage_come_from_config() -> None:
    graph = render_variant("dev", {"modelplane:observability": {
        "retentionDays": 30, "retentionSizeGb": 80, "storageGb": 100}})
    spec = _prometheus_spec(graph)
    assert (spec["retention"], spec["retentionSize"]) == ("30d", "80GiB")
    assert spec["storageSpec"]["volumeClaimTemplate"]["spec"]["resources"] == {"requests": {"storage": "100Gi"}}


def test_alertmanager_and_grafana_can_be_switched_off() -> None:
    graph = _render({"alertmanager": False, "grafana": False})
    values = _release(graph, "kube-prometheus-stack")["values"]
    assert values["alertmanager"] == {"enabled": False}
    assert values["grafana"] == {"enabled": False}
    # No Grafana: no admin secret and no dashboards to deliver.
    assert not [r for r in graph.of_type("kubernetes:core/v1:Secret") if r.inputs["metadata"]["name"] == "grafana-admin"]
    assert not _dashboards(graph)


def test_grafana_admin_password_is_generated_and_kept_out_of_helm_values(prod: Graph) -> None:
    grafana = _release(prod, "kube-prometheus-stack")["values"]["grafana"]
    assert grafana["admin"] == {"existingSecret": "grafana-admin", "userKey": "admin-user", "passwordKey": "admin-password"}
    assert "adminPassword" not in json.dumps(_release(prod, "kube-prometheus-stack"))
    secret = prod.one("kubernetes:core/v1:Secret", "observability-grafana-admin").inputs
    assert secret["metadata"]["name"] == "grafana-admin" and secret["metadata"]["namespace"] == "monitoring"
    assert secret["stringData"] == {"admin-user": "[secret]", "admin-password": "[secret]"}
    assert prod.one("random:index/randomPassword:RandomPassword", "observability-grafana-admin").inputs["length"] == 32
    assert "offline-" not in prod.to_json()


def test_grafana_sidecar_loads_dashboards_from_every_namespace(prod: Graph) -> None:
    dashboards = _release(prod, "kube-prometheus-stack")["values"]["grafana"]["sidecar"]["dashboards"]
    assert {key: dashboards[key] for key in ("enabled", "label", "labelValue", "searchNamespace")} == {
        "enabled": True, "label": "grafana_dashboard", "labelValue": "1", "searchNamespace": "ALL"}


def _secret_file(mounts: list[dict[str, Any]], volumes: dict[str, str], path: str) -> str | None:
    """`<Secret>/<key>` that `path` reads through one of the read-only `mounts` of a Secret volume, else None."""
    for mount in mounts:
        directory = mount["mountPath"].rstrip("/") + "/"
        if mount.get("readOnly") is True and mount["name"] in volumes and path.startswith(directory):
            return f"{volumes[mount['name']]}/{path.removeprefix(directory)}"
    return None


@pytest.mark.parametrize("name", ["dev", "staging", "prod"])
def test_grafana_and_its_sidecars_read_the_admin_credentials_from_files(
    stack_graph: Callable[[str], Graph], name: str
) -> None:
    grafana = _release(stack_graph(name), "kube-prometheus-stack")["values"]["grafana"]
    mounts = grafana["extraSecretMounts"]
    volumes = {m["name"]: m["secretName"] for m in mounts}
    # grafana 12.11.1 templates/_pod.tpl: GF_SECURITY_ADMIN_USER/PASSWORD (grafana container) and REQ_USERNAME/
    # REQ_PASSWORD (sidecars) become secretKeyRef env vars unless env has these two `__FILE` keys.
    env = grafana["env"]
    assert {_secret_file(mounts, volumes, env[f"GF_SECURITY_ADMIN_{key}__FILE"]) for key in ("USER", "PASSWORD")} == {
        "grafana-admin/admin-user", "grafana-admin/admin-password"}
    assert not {"envValueFrom", "envFromSecret", "envFromSecrets", "envRenderSecret"} & set(grafana)
    for sidecar in ("dashboards", "datasources"):
        values = grafana["sidecar"][sidecar]
        # The init-container variants emit REQ_USERNAME from the Secret whatever env says.
        assert not values.get(f"init{sidecar.capitalize()}")
        files = {_secret_file(values["extraMounts"], volumes, values["env"][f"REQ_{key}_FILE"])
                 for key in ("USERNAME", "PASSWORD")}
        assert files == {"grafana-admin/admin-user", "grafana-admin/admin-password"}, sidecar
        assert "envValueFrom" not in values


def test_every_rule_file_becomes_a_prometheus_rule_verbatim(prod: Graph) -> None:
    # (Components add rules of their own, e.g. the recommendation processor's thresholds.)
    rules = {r.inputs["metadata"]["name"]: r.inputs for r in prod.of_type(RULE) if r.name.startswith("observability-")}
    files = load_rule_files()
    assert set(rules) == {f"modelplane-{stem}" for stem in files} == {
        f"modelplane-{p.stem}" for p in RULES_DIR.glob("*.yaml")}
    for stem, groups in files.items():
        assert rules[f"modelplane-{stem}"]["spec"] == {"groups": groups}
        assert rules[f"modelplane-{stem}"]["metadata"]["namespace"] == "monitoring"


def test_dashboards_are_config_maps_labelled_for_the_grafana_sidecar(prod: Graph) -> None:
    maps = {m["metadata"]["name"]: m for m in _dashboards(prod)}
    stems = ("gpu", "training", "inference", "llm", "recommend")
    assert set(maps) == {f"modelplane-dashboard-{stem}" for stem in stems}
    for stem in stems:
        config_map = maps[f"modelplane-dashboard-{stem}"]
        assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert config_map["data"] == {f"modelplane-{stem}.json": (DASHBOARDS_DIR / f"{stem}.json").read_text()}


def test_serving_pods_are_scraped_over_mesh_mtls_with_prometheus_identity(prod: Graph) -> None:
    monitor = prod.one(SERVICE_MONITOR, "observability-serving-monitor").inputs
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["inference"]}
    assert monitor["spec"]["selector"] == {"matchLabels": {"app.kubernetes.io/component": "inference"}}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert (endpoint["port"], endpoint["path"], endpoint["scheme"]) == ("http", "/metrics", "https")
    assert endpoint["tlsConfig"] == {"caFile": "/etc/prom-certs/root-cert.pem", "certFile": "/etc/prom-certs/cert-chain.pem",
                                     "keyFile": "/etc/prom-certs/key.pem", "insecureSkipVerify": True}
    spec = _prometheus_spec(prod)
    assert spec["podMetadata"]["labels"] == {"sidecar.istio.io/inject": "true"}
    annotations = spec["podMetadata"]["annotations"]
    assert annotations["traffic.sidecar.istio.io/includeInboundPorts"] == ""
    assert annotations["traffic.sidecar.istio.io/includeOutboundIPRanges"] == ""
    assert json.loads(annotations["proxy.istio.io/config"]) == {"proxyMetadata": {"OUTPUT_CERTS": "/etc/istio-output-certs"}}
    assert spec["volumeMounts"] == [{"name": "istio-certs", "mountPath": "/etc/prom-certs", "readOnly": True}]


def test_the_mesh_admits_the_service_account_prometheus_runs_as(prod: Graph) -> None:
    stack = _release(prod, "kube-prometheus-stack")
    account = stack["values"]["prometheus"]["serviceAccount"]
    assert account["create"] is True
    allowed = {p for r in prod.of_type(AUTHZ) if r.inputs["metadata"]["name"] == "allow-metrics-scrape"
               for rule in r.inputs["spec"]["rules"] for p in rule["from"][0]["source"]["principals"]}
    assert allowed == {f"cluster.local/ns/{stack['namespace']}/sa/{account['name']}"}


def test_training_leaders_are_scraped_on_their_metrics_port(prod: Graph) -> None:
    spec = prod.one(POD_MONITOR).inputs["spec"]
    assert spec["namespaceSelector"] == {"matchNames": ["training"]}
    # Only the leader (JobSet's Job 0, its pod 0) serves /metrics.
    assert spec["selector"] == {"matchLabels": {"app.kubernetes.io/component": "training",
                                                "jobset.sigs.k8s.io/job-index": "0",
                                                "batch.kubernetes.io/job-completion-index": "0"}}
    assert spec["podMetricsEndpoints"] == [{"port": "metrics", "path": "/metrics", "interval": "30s"}]


def test_prometheus_adapter_serves_the_hpa_queue_depth_per_pod(prod: Graph) -> None:
    adapter = _release(prod, "prometheus-adapter")
    assert (adapter["version"], adapter["namespace"]) == (versions.PROMETHEUS_ADAPTER_VERSION, "monitoring")
    # The chart's Prometheus Service is <release>-prometheus on port 9090.
    assert adapter["values"]["prometheus"] == {"url": "http://kube-prometheus-stack-prometheus.monitoring.svc", "port": 9090}
    assert adapter["values"]["rules"]["default"] is False
    rules = {rule["name"]["as"]: rule for rule in adapter["values"]["rules"]["custom"]}
    assert set(rules) == {metrics.INFERENCE_QUEUE_DEPTH, metrics.INFERENCE_IN_FLIGHT, "vllm_num_requests_waiting"}
    queue = rules["modelplane_inference_queue_depth"]
    assert queue["resources"] == {"overrides": {"namespace": {"resource": "namespace"}, "pod": {"resource": "pod"}}}
    assert queue["seriesQuery"] == 'modelplane_inference_queue_depth{namespace!="",pod!=""}'


def test_prometheus_adapter_serves_vllm_waiting_requests_without_the_colon(prod: Graph) -> None:
    rules = {rule["name"]["as"]: rule for rule in _release(prod, "prometheus-adapter")["values"]["rules"]["custom"]}
    waiting = rules["vllm_num_requests_waiting"]
    assert waiting["name"]["matches"] == "^vllm:num_requests_waiting$"
    assert waiting["seriesQuery"] == 'vllm:num_requests_waiting{namespace!="",pod!=""}'
    assert waiting["resources"] == {"overrides": {"namespace": {"resource": "namespace"}, "pod": {"resource": "pod"}}}
    assert ":" not in waiting["name"]["as"]


def test_local_stack_has_no_monitoring_unless_asked(stack_graph: Callable[[str], Graph]) -> None:
    assert not [r for r in stack_graph("local").of_type(HELM_RELEASE) if r.inputs["chart"] == "kube-prometheus-stack"]
    graph = render_variant("local", {"modelplane:observability": {"enabled": True, "storageGb": 10}})
    spec = _prometheus_spec(graph)
    # The cluster's default StorageClass, no gp3 class, and plain-http scraping (no mesh).
    assert spec["storageSpec"]["volumeClaimTemplate"]["spec"] == {
        "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "10Gi"}}}
    assert_count(graph, STORAGE_CLASS, 0)
    assert "podMetadata" not in spec
    assert "scheme" not in graph.one(SERVICE_MONITOR, "observability-serving-monitor").inputs["spec"]["endpoints"][0]
