"""The privileged node-agent allowlist is keyed by namespace, name and chart, not by a name anywhere."""

import copy
from collections.abc import Callable

import pytest

from infra.review.graph import Graph
from infra.review.policy import PolicyConfigError, validate_config
from policies.rules.mesh import chart_name
from policies.rules.workloads import K8S_NO_HOST_ACCESS, K8S_NO_PRIVILEGED, K8S_RUN_AS_NON_ROOT
from tests.policies.helpers import k8s, k8s_type, violations

PRIVILEGE_RULES = [K8S_NO_PRIVILEGED, K8S_RUN_AS_NON_ROOT, K8S_NO_HOST_ACCESS]
RELEASE = "kubernetes:helm.sh/v3:Release"
AGENT_POD = {
    "hostNetwork": True, "securityContext": {},
    "containers": [{"name": "nvidia-device-plugin-ctr", "image": "nvcr.io/nvidia/k8s-device-plugin:v0.18.2",
                    "securityContext": {"privileged": True},
                    "resources": {"limits": {"cpu": "100m", "memory": "64Mi"}}}],
    "volumes": [{"name": "kubelet-device-plugins-dir", "hostPath": {"path": "/var/lib/kubelet/device-plugins"}}],
}


def agent(namespace: str, name: str, chart_label: str | None) -> dict:
    """A privileged, root, host-network, hostPath DaemonSet (what a node agent looks like)."""
    labels = {"helm.sh/chart": chart_label, "app.kubernetes.io/managed-by": "Helm"} if chart_label else None
    return k8s("apps/v1", "DaemonSet", name, {"template": {"spec": copy.deepcopy(AGENT_POD)}}, namespace=namespace,
               labels=labels)


def check(policy, obj: dict, **kwargs) -> list[str]:
    return violations(policy, k8s_type(obj), obj, **kwargs)


def fullname(release: str, chart: str) -> str:
    """The `<chart>.fullname` helper of the device plugin, DCGM, Fluent Bit and node-exporter charts (their
    _helpers.tpl): the release name when it contains the chart name, else `<release>-<chart>`."""
    return release if chart in release else f"{release}-{chart}"


# The DaemonSets each node-agent chart renders for a release (see policies/rules/workloads.py for the templates).
CHART_DAEMONSETS: dict[str, Callable[[str], list[str]]] = {
    "nvidia-device-plugin": lambda release: [fullname(release, "nvidia-device-plugin"),
                                             f"{fullname(release, 'nvidia-device-plugin')}-mps-control-daemon"],
    "dcgm-exporter": lambda release: [fullname(release, "dcgm-exporter")],
    "fluent-bit": lambda release: [fullname(release, "fluent-bit")],
    "cni": lambda release: ["istio-cni-node"],
}


def rendered_agents(graph: Graph) -> list[dict]:
    """The node-agent DaemonSets the stack's Helm releases render: release namespace, chart naming, chart label."""
    found = []
    for resource in graph.resources:
        chart = chart_name(resource.inputs)
        if resource.type == RELEASE and chart in CHART_DAEMONSETS:
            found += [agent(str(resource.inputs["namespace"]), name, f"{chart}-{resource.inputs['version']}")
                      for name in CHART_DAEMONSETS[chart](str(resource.inputs["name"]))]
    return found


@pytest.mark.parametrize("stack", ["dev", "local", "prod", "staging"])
@pytest.mark.parametrize("policy", PRIVILEGE_RULES, ids=lambda p: p.name)
def test_the_stacks_node_agents_as_their_charts_render_them_are_exempt(policy, stack: str,
                                                                       stack_graph: Callable[[str], Graph]) -> None:
    agents = rendered_agents(stack_graph(stack))
    assert len(agents) == (1 if stack == "local" else 5), [a["metadata"] for a in agents]
    assert [(a["metadata"]["namespace"], a["metadata"]["name"], check(policy, a)) for a in agents] == [
        (a["metadata"]["namespace"], a["metadata"]["name"], []) for a in agents]


@pytest.mark.parametrize("stack", ["dev", "local", "prod", "staging"])
def test_the_stacks_node_agent_releases_are_in_their_allowed_namespaces(stack: str,
                                                                        stack_graph: Callable[[str], Graph]) -> None:
    releases = [r for r in stack_graph(stack).resources if r.type == RELEASE]
    assert [(r.name, violations(K8S_NO_HOST_ACCESS, RELEASE, r.inputs, name=r.name)) for r in releases] == [
        (r.name, []) for r in releases]


@pytest.mark.parametrize("policy", PRIVILEGE_RULES, ids=lambda p: p.name)
def test_a_look_alike_of_the_device_plugin_in_inference_fails(policy) -> None:
    found = check(policy, agent("inference", "nvidia-device-plugin", "nvidia-device-plugin-0.18.2"))
    assert found and all("DaemonSet inference/nvidia-device-plugin" in m for m in found)


@pytest.mark.parametrize("policy", PRIVILEGE_RULES, ids=lambda p: p.name)
def test_a_device_plugin_name_in_kube_system_not_rendered_by_its_chart_fails(policy) -> None:
    assert check(policy, agent("kube-system", "nvidia-device-plugin", None))
    assert check(policy, agent("kube-system", "nvidia-device-plugin", "sniffer-1.0.0"))
    assert check(policy, agent("kube-system", "nvidia-device-plugin", "nvidia-device-plugin-evil"))


@pytest.mark.parametrize("policy", PRIVILEGE_RULES, ids=lambda p: p.name)
def test_any_other_daemonset_in_kube_system_fails(policy) -> None:
    assert check(policy, agent("kube-system", "sniffer", "sniffer-1.0.0"))


@pytest.mark.parametrize(("namespace", "name", "label"), [
    ("kube-system", "nvidia-device-plugin-mps-control-daemon", "nvidia-device-plugin-0.18.2"),
    ("monitoring", "kube-prometheus-stack-prometheus-node-exporter", "prometheus-node-exporter-4.0.0"),
    ("istio-system", "istio-cni-node", "cni-1.29.6"),
])
def test_every_default_entry_admits_its_agent(namespace: str, name: str, label: str) -> None:
    assert [check(policy, agent(namespace, name, label)) for policy in PRIVILEGE_RULES] == [[], [], []]


def test_an_entry_without_a_chart_matches_by_namespace_and_name() -> None:
    config = {"systemDaemonSets": [{"namespace": "kube-system", "name": "aws-node"}]}
    assert check(K8S_NO_HOST_ACCESS, agent("kube-system", "aws-node", None), config=config) == []
    assert check(K8S_NO_HOST_ACCESS, agent("inference", "aws-node", None), config=config)


def test_an_empty_allowlist_exempts_nothing() -> None:
    obj = agent("kube-system", "nvidia-device-plugin", "nvidia-device-plugin-0.18.2")
    assert check(K8S_NO_HOST_ACCESS, obj, config={"systemDaemonSets": []})


def release(namespace: str, chart: str = "nvidia-device-plugin") -> dict:
    return {"chart": chart, "version": "0.18.2", "name": "nvidia-device-plugin", "namespace": namespace,
            "repositoryOpts": {"repo": "https://nvidia.github.io/k8s-device-plugin"}}


def test_a_node_agent_chart_released_outside_its_namespace_is_reported() -> None:
    found = violations(K8S_NO_HOST_ACCESS, RELEASE, release("inference"), name="gpu-plugin")
    assert len(found) == 1
    assert "'gpu-plugin'" in found[0] and "'nvidia-device-plugin'" in found[0] and "'inference'" in found[0]
    assert "kube-system" in found[0]


@pytest.mark.parametrize("props", [release("kube-system"), release("inference", chart="kube-prometheus-stack")])
def test_node_agent_charts_in_their_namespace_and_other_charts_comply(props: dict) -> None:
    assert violations(K8S_NO_HOST_ACCESS, RELEASE, props) == []


@pytest.mark.parametrize("entries", [["kube-system/nvidia-device-plugin"], [{"name": "x"}],
                                     [{"namespace": "kube-system", "name": "x", "image": "y"}]])
def test_allowlist_entries_need_namespace_and_name(entries: list) -> None:
    with pytest.raises(PolicyConfigError, match=r"k8s-no-host-access\.systemDaemonSets"):
        validate_config({"k8s-no-host-access": {"systemDaemonSets": entries}})
