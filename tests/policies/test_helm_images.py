"""k8s-image-pinned judges the images a Helm release's values choose the same way as pod images."""

import copy
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from infra.review.graph import Graph
from infra.versions import ISTIO_VERSION
from policies.rules.workloads import K8S_IMAGE_PINNED
from tests.policies.helpers import violations

RELEASE = "kubernetes:helm.sh/v3:Release"
ISTIO = Path(__file__).parents[1] / "conformance" / "istio" / ISTIO_VERSION
"""Istio's values files, vendored at the pinned release."""


def check(values: dict, **kwargs) -> list[str]:
    props = {"chart": "dcgm-exporter", "version": "4.8.2", "namespace": "kube-system", "values": values}
    return violations(K8S_IMAGE_PINNED, RELEASE, props, name="gpu-dcgm-exporter", **kwargs)


@pytest.mark.parametrize(("values", "path", "image"), [
    ({"image": {"repository": "nvcr.io/nvidia/k8s/dcgm-exporter", "tag": "latest"}}, "values.image",
     "nvcr.io/nvidia/k8s/dcgm-exporter:latest"),
    ({"image": {"tag": "latest"}}, "values.image", "(chart default):latest"),
    ({"image": "nvcr.io/nvidia/k8s/dcgm-exporter:latest"}, "values.image", "nvcr.io/nvidia/k8s/dcgm-exporter:latest"),
    ({"image": "busybox"}, "values.image", "busybox"),
    ({"prometheus": {"prometheusSpec": {"image": {"registry": "quay.io", "repository": "prometheus/prometheus",
                                                  "tag": "latest"}}}},
     "values.prometheus.prometheusSpec.image", "quay.io/prometheus/prometheus:latest"),
    # Istio's split layout: global.tag is the tag of every string image; alone it is judged on its own.
    ({"global": {"hub": "docker.io/istio", "tag": "latest"}}, "values.global.tag", "(chart default):latest"),
    ({"global": {"hub": "docker.io/istio", "tag": ""}}, "values.global.tag", "(chart default):"),
    ({"cni": {"image": "install-cni"}, "global": {"tag": "latest"}}, "values.cni.image", "install-cni:latest"),
    ({"image": "pilot", "tag": "1.29.6", "global": {"tag": "latest", "proxy": {"image": "proxyv2"}}},
     "values.global.proxy.image", "proxyv2:latest"),
    ({"image": "pilot", "tag": "", "global": {"tag": "latest"}}, "values.image", "pilot:latest"),
    # Elastic-style imageTag beside a string image, and alone.
    ({"image": "docker.elastic.co/elasticsearch/elasticsearch", "imageTag": "latest"}, "values.image",
     "docker.elastic.co/elasticsearch/elasticsearch:latest"),
    ({"imageTag": "latest"}, "values.imageTag", "(chart default):latest"),
    ({"extraContainers": [{"name": "x", "image": "registry:5000/team/app"}]}, "values.extraContainers[0].image",
     "registry:5000/team/app"),
    ({"sidecar": {"configReloaderImage": "ghcr.io/jimmidyson/configmap-reload"}}, "values.sidecar.configReloaderImage",
     "ghcr.io/jimmidyson/configmap-reload"),
])
def test_unpinned_images_in_helm_values_are_reported(values: dict, path: str, image: str) -> None:
    found = check(values)
    assert len(found) == 1, found
    assert f"Helm release 'gpu-dcgm-exporter' {path} uses image {image!r}" in found[0] and "not pinned" in found[0]


@pytest.mark.parametrize("values", [
    {"image": {"repository": "nvcr.io/nvidia/k8s/dcgm-exporter", "tag": "4.5.2-4.8.1-distroless"}},
    {"image": {"tag": "4.5.2-4.8.1-distroless", "pullPolicy": "IfNotPresent"}},
    {"image": {"repository": "quay.io/prometheus/prometheus", "digest": "sha256:" + "a" * 64}},
    {"image": {"registry": "quay.io", "repository": "prometheus/prometheus", "tag": "v3.5.0", "sha": "b" * 64}},
    {"image": "nvcr.io/nvidia/k8s/dcgm-exporter:4.5.2-4.8.1-distroless"},
    {"image": "install-cni", "tag": "1.29.6"},
    {"cni": {"image": "install-cni"}, "global": {"tag": "1.29.6"}},
    {"image": "pilot", "tag": "", "global": {"hub": "docker.io/istio", "tag": "1.29.6", "proxy": {"image": "proxyv2"}}},
    {"global": {"hub": "docker.io/istio", "tag": "1.29.6"}},
    {"image": "docker.elastic.co/elasticsearch/elasticsearch", "imageTag": "8.19.0"},
    {"imageTag": "8.19.0"},
    {"image": {"repository": "mirror/x"}},
    {"image": {"registry": "quay.io", "repository": "prometheus/prometheus", "tag": ""}},
    {"input": {"tag": "kube.*"}},
    {"image": {"pullPolicy": "IfNotPresent"}},
    {"imagePullSecrets": [{"name": "ecr"}], "serviceMonitor": {"enabled": True}},
    {},
])
def test_pinned_or_chart_chosen_images_comply(values: dict) -> None:
    assert check(values) == []


def test_digest_requirement_applies_to_helm_values_too() -> None:
    found = check({"image": {"repository": "nvcr.io/nvidia/k8s/dcgm-exporter", "tag": "4.5.2"}},
                  config={"requireDigest": True})
    assert len(found) == 1 and "a digest (@sha256:...)" in found[0]


def test_a_chart_default_tag_is_no_digest() -> None:
    found = check({"image": {"repository": "mirror/x"}}, config={"requireDigest": True})
    assert len(found) == 1 and "'mirror/x:(chart default)'" in found[0] and "a digest (@sha256:...)" in found[0]


def _istio_values(chart: str) -> dict:
    """The vendored chart's own values as a user would set them (Istio nests its defaults under one key)."""
    text = (ISTIO / f"values-{chart}.yaml").read_text()
    return copy.deepcopy(yaml.safe_load(text)["_internal_defaults_do_not_set"])


@pytest.mark.parametrize(("chart", "images"), [
    ("istiod", {"values.image": "pilot", "values.global.proxy.image": "proxyv2",
                "values.global.proxy_init.image": "proxyv2"}),
    ("cni", {"values.image": "install-cni"}),
])
def test_istio_images_take_global_tag(chart: str, images: dict[str, str]) -> None:
    values = _istio_values(chart)
    assert values["global"]["tag"] == "latest"  # the source tree's value; released charts carry the version
    found = check(values)
    assert sorted(found) == sorted(
        f"Helm release 'gpu-dcgm-exporter' {path} uses image {f'{image}:latest'!r}, which is not pinned to a version "
        f"tag or a digest; nodes may run different code after a push. Fix: pin it (image versions live in "
        f"infra/versions.py)." for path, image in images.items())
    values["global"]["tag"] = ISTIO_VERSION
    assert check(values) == []


def test_non_helm_resources_are_not_read_as_values() -> None:
    props = {"values": {"image": "nginx"}}
    assert violations(K8S_IMAGE_PINNED, "aws:ssm/parameter:Parameter", props) == []


@pytest.mark.parametrize("stack", ["dev", "local", "prod", "staging"])
def test_the_stacks_helm_values_comply(stack: str, stack_graph: Callable[[str], Graph]) -> None:
    releases = [r for r in stack_graph(stack).resources if r.type == RELEASE]
    assert releases
    assert [(r.name, violations(K8S_IMAGE_PINNED, RELEASE, r.inputs, name=r.name)) for r in releases] == [
        (r.name, []) for r in releases]
