"""Istio STRICT mTLS and Helm chart pinning."""

import pytest

from policies.rules.helm import HELM_CHART_PINNED
from policies.rules.mesh import ISTIO_MTLS_STRICT
from tests.policies.helpers import Res, k8s, k8s_type, stack_violations, urn, violations

RELEASE = "kubernetes:helm.sh/v3:Release"
ISTIOD = Res(RELEASE, "mesh-istiod", {"chart": "istiod", "version": "1.28.1",
                                      "repositoryOpts": {"repo": "https://istio-release.storage.googleapis.com/charts"}})


def peer_auth(name: str, namespace: str, spec: dict) -> Res:
    obj = k8s("security.istio.io/v1", "PeerAuthentication", name, spec, namespace=namespace)
    return Res(k8s_type(obj), f"mesh-{name}", obj)


STRICT = peer_auth("default", "istio-system", {"mtls": {"mode": "STRICT"}})


def test_mesh_wide_strict_complies() -> None:
    assert stack_violations(ISTIO_MTLS_STRICT, [ISTIOD, STRICT]) == []


def test_no_istio_no_requirement() -> None:
    assert stack_violations(ISTIO_MTLS_STRICT, []) == []


def test_istio_without_a_mesh_wide_policy_is_reported_on_istiod() -> None:
    found = stack_violations(ISTIO_MTLS_STRICT, [ISTIOD])
    assert [u for u, _ in found] == [urn(RELEASE, "mesh-istiod")] and "PERMISSIVE" in found[0][1]


@pytest.mark.parametrize("spec", [{"mtls": {"mode": "PERMISSIVE"}}, {}, {"mtls": {"mode": "DISABLE"}}])
def test_relaxed_mesh_wide_policy_is_reported(spec) -> None:
    relaxed = peer_auth("default", "istio-system", spec)
    found = stack_violations(ISTIO_MTLS_STRICT, [ISTIOD, relaxed])
    assert relaxed.name in found[0][0] and "STRICT" in found[0][1]


def test_namespace_policy_relaxing_mtls_is_reported() -> None:
    legacy = peer_auth("legacy", "inference", {"mtls": {"mode": "PERMISSIVE"}})
    found = stack_violations(ISTIO_MTLS_STRICT, [ISTIOD, STRICT, legacy])
    assert [u for u, _ in found] == [urn(legacy.type, legacy.name)]


def test_port_level_exceptions_are_reported() -> None:
    ports = peer_auth("metrics", "inference", {"selector": {"matchLabels": {"app": "x"}}, "mtls": {"mode": "STRICT"},
                                               "portLevelMtls": {"9090": {"mode": "DISABLE"}}})
    found = stack_violations(ISTIO_MTLS_STRICT, [ISTIOD, STRICT, ports])
    assert len(found) == 1 and "9090" in found[0][1]


def test_namespace_policy_inheriting_strict_complies() -> None:
    inherit = peer_auth("inherit", "inference", {"selector": {"matchLabels": {"app": "x"}}})
    assert stack_violations(ISTIO_MTLS_STRICT, [ISTIOD, STRICT, inherit]) == []


@pytest.mark.parametrize("chart", ["istiod", "oci://public.ecr.aws/karpenter/karpenter", "./charts/local"])
def test_pinned_charts_comply(chart) -> None:
    assert violations(HELM_CHART_PINNED, RELEASE, {"chart": chart, "version": "1.14.1"}) == []


@pytest.mark.parametrize("version", [None, "", "^1.2.0", "1.x", ">=1.0.0", "latest"])
def test_unpinned_charts_are_reported(version) -> None:
    found = violations(HELM_CHART_PINNED, RELEASE, {"chart": "kube-prometheus-stack", "version": version}, name="obs")
    assert len(found) == 1 and "'obs'" in found[0] and "exact version" in found[0]


def test_local_charts_need_no_version() -> None:
    assert violations(HELM_CHART_PINNED, RELEASE, {"chart": "./charts/ours"}) == []
