"""What the conformance suite vendors: for each pinned chart or operator in infra/versions.py, the upstream repository,
the git tag of that version, and the files (CRDs, the chart's values.yaml) copied verbatim into
tests/conformance/<bundle>/<version>/. tests/conformance/refresh.py writes them; test_conformance.py reads them.

Tags and paths were read from the repositories at those tags (the CRDs the charts install, the charts' values.yaml):
- Karpenter: github.com/aws/karpenter-provider-aws tag v1.14.1, pkg/apis/crds/* (the files charts/karpenter/crds/
  symlinks to and charts/karpenter-crd/templates/ wraps) and charts/karpenter*/values.yaml.
- Istio: github.com/istio/istio tag 1.29.6, manifests/charts/base/files/crd-all.gen.yaml (the CRDs the `base` chart
  installs) and the values.yaml of manifests/charts/{base,istio-cni,istio-control/istio-discovery,gateway}.
- JobSet: github.com/kubernetes-sigs/jobset tag v0.12.0, charts/jobset/crds/jobset.x-k8s.io_jobsets.yaml (the CRD the
  chart installs) and charts/jobset/values.yaml.
- Kubeflow Trainer v2: github.com/kubeflow/trainer tag v2.3.0, manifests/base/crds/trainer.kubeflow.org_*.yaml (the
  CRDs charts/kubeflow-trainer/templates/crd/ wraps in `{{- if .Values.crds.enabled }}`, otherwise identical) and
  charts/kubeflow-trainer/values.yaml.
- prometheus-operator v0.93.1: the CRDs kube-prometheus-stack 88.5.3 installs (charts/kube-prometheus-stack/charts/
  crds/crds/, each a verbatim copy of prometheus-operator v0.93.1 example/prometheus-operator-crd/) in
  github.com/prometheus-community/helm-charts tag kube-prometheus-stack-88.5.3, with that chart's values.yaml;
  prometheus-adapter 5.3.0 from the same repository (tag prometheus-adapter-5.3.0); the values.yaml of its grafana
  dependency 12.11.1 from github.com/grafana-community/helm-charts tag grafana-12.11.1 (charts/grafana/).
- github.com/NVIDIA/k8s-device-plugin tag v0.18.2 and github.com/NVIDIA/dcgm-exporter tag 4.5.3-4.8.2 (chart 4.8.2).
- Kueue: github.com/kubernetes-sigs/kueue tag v0.19.2, config/components/crd/bases/kueue.x-k8s.io_*.yaml (the CRDs
  charts/kueue/templates/crd/ generates its templates from, adding labels and the conversion webhook) and
  charts/kueue/values.yaml.
Strimzi (tests/conformance/strimzi/) and Fluent Bit (tests/infra/k8s/fluent_bit_values.yaml) were vendored earlier
with their own SOURCE notes; the suite checks Strimzi's CRDs too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from infra import versions

ROOT = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Bundle:
    """One pinned upstream version and the files vendored from it."""

    name: str
    """Directory under tests/conformance/."""
    version: str
    """The pin in infra/versions.py (the vendored directory's name)."""
    repo: str
    """GitHub owner/name."""
    tag: str
    """The git tag of that version."""
    files: dict[str, str]
    """Upstream path -> vendored file name."""
    charts: dict[str, str] = field(default_factory=dict)
    """Helm chart name as the program installs it -> vendored values file (a subset of `files` values)."""
    free_form: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Chart -> dotted values paths the chart passes through whole (its values.yaml shows only an example)."""
    root_aliases: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Chart -> legacy prefixes its templates merge into the root of its values."""
    subcharts: dict[str, str] = field(default_factory=dict)
    """Values key of a chart dependency -> the bundle with that dependency's values.yaml (Helm reads the parent's
    `<key>:` values over the dependency's own defaults)."""

    @property
    def directory(self) -> Path:
        """Where the files live in this repository."""
        return ROOT / self.name / self.version


def _dcgm_tag(chart_version: str) -> str:
    # dcgm-exporter tags are <DCGM release>-<exporter release>; the chart version is the exporter release.
    return f"4.5.3-{chart_version}"


_GRAFANA_OF_KPS = {"88.5.3": "12.11.1"}
"""The grafana dependency of each kube-prometheus-stack version (charts/kube-prometheus-stack/Chart.yaml at its tag:
`name: grafana, version: "12.11.1", repository: https://grafana-community.github.io/helm-charts`)."""
GRAFANA_CHART_VERSION = _GRAFANA_OF_KPS.get(versions.KUBE_PROMETHEUS_STACK_VERSION,
                                            "unknown: add the grafana dependency of the new kube-prometheus-stack")
"""The grafana chart kube-prometheus-stack installs, whose values sit under the stack's `grafana:` key."""

_ISTIO_CHARTS = "manifests/charts"
_KPS = "charts/kube-prometheus-stack"
_KUEUE_CRDS = "config/components/crd/bases"

BUNDLES: tuple[Bundle, ...] = (
    Bundle("karpenter", versions.KARPENTER_VERSION, "aws/karpenter-provider-aws", f"v{versions.KARPENTER_VERSION}", {
        "pkg/apis/crds/karpenter.sh_nodepools.yaml": "karpenter.sh_nodepools.yaml",
        "pkg/apis/crds/karpenter.k8s.aws_ec2nodeclasses.yaml": "karpenter.k8s.aws_ec2nodeclasses.yaml",
        "charts/karpenter/values.yaml": "values-karpenter.yaml",
        "charts/karpenter-crd/values.yaml": "values-karpenter-crd.yaml",
    }, {versions.KARPENTER_CHART: "values-karpenter.yaml", versions.KARPENTER_CRD_CHART: "values-karpenter-crd.yaml"}),
    Bundle("istio", versions.ISTIO_VERSION, "istio/istio", versions.ISTIO_VERSION, {
        f"{_ISTIO_CHARTS}/base/files/crd-all.gen.yaml": "crd-all.gen.yaml",
        f"{_ISTIO_CHARTS}/base/values.yaml": "values-base.yaml",
        f"{_ISTIO_CHARTS}/istio-cni/values.yaml": "values-cni.yaml",
        f"{_ISTIO_CHARTS}/istio-control/istio-discovery/values.yaml": "values-istiod.yaml",
        f"{_ISTIO_CHARTS}/gateway/values.yaml": "values-gateway.yaml",
    }, {"base": "values-base.yaml", "cni": "values-cni.yaml", "istiod": "values-istiod.yaml",
        "gateway": "values-gateway.yaml"},
        # values-istiod.yaml: "meshConfig defines runtime configuration ... See
        # https://istio.io/docs/reference/config/istio.mesh.v1alpha1/ for all available options" (the MeshConfig proto).
        free_form={"istiod": ("meshConfig",)},
        # istio-discovery/templates/zzy_descope_legacy.yaml: "Copy anything under `.pilot` to `.`".
        root_aliases={"istiod": ("pilot",)}),
    Bundle("kube-prometheus-stack", versions.KUBE_PROMETHEUS_STACK_VERSION, "prometheus-community/helm-charts",
           f"kube-prometheus-stack-{versions.KUBE_PROMETHEUS_STACK_VERSION}", {
               f"{_KPS}/charts/crds/crds/crd-podmonitors.yaml": "crd-podmonitors.yaml",
               f"{_KPS}/charts/crds/crds/crd-prometheusrules.yaml": "crd-prometheusrules.yaml",
               f"{_KPS}/charts/crds/crds/crd-servicemonitors.yaml": "crd-servicemonitors.yaml",
               f"{_KPS}/values.yaml": "values.yaml",
           }, {"kube-prometheus-stack": "values.yaml"}, subcharts={"grafana": "grafana"}),
    Bundle("grafana", GRAFANA_CHART_VERSION, "grafana-community/helm-charts", f"grafana-{GRAFANA_CHART_VERSION}",
           {"charts/grafana/values.yaml": "values.yaml"}),
    Bundle("prometheus-adapter", versions.PROMETHEUS_ADAPTER_VERSION, "prometheus-community/helm-charts",
           f"prometheus-adapter-{versions.PROMETHEUS_ADAPTER_VERSION}",
           {"charts/prometheus-adapter/values.yaml": "values.yaml"}, {"prometheus-adapter": "values.yaml"}),
    Bundle("nvidia-device-plugin", versions.NVIDIA_DEVICE_PLUGIN_VERSION, "NVIDIA/k8s-device-plugin",
           f"v{versions.NVIDIA_DEVICE_PLUGIN_VERSION}",
           {"deployments/helm/nvidia-device-plugin/values.yaml": "values.yaml"},
           {versions.NVIDIA_DEVICE_PLUGIN_CHART: "values.yaml"}),
    Bundle("dcgm-exporter", versions.DCGM_EXPORTER_VERSION, "NVIDIA/dcgm-exporter", _dcgm_tag(versions.DCGM_EXPORTER_VERSION),
           {"deployment/values.yaml": "values.yaml"}, {versions.DCGM_EXPORTER_CHART: "values.yaml"}),
    Bundle("strimzi", versions.STRIMZI_VERSION, "strimzi/strimzi-kafka-operator", versions.STRIMZI_VERSION, {
        "helm-charts/helm3/strimzi-kafka-operator/crds/040-Crd-kafka.yaml": "040-Crd-kafka.yaml",
        "helm-charts/helm3/strimzi-kafka-operator/crds/045-Crd-kafkanodepool.yaml": "045-Crd-kafkanodepool.yaml",
        "helm-charts/helm3/strimzi-kafka-operator/values.yaml": "values.yaml",
    }, {versions.STRIMZI_CHART: "values.yaml"}),
    Bundle("kueue", versions.KUEUE_VERSION, "kubernetes-sigs/kueue", f"v{versions.KUEUE_VERSION}", {
        **{f"{_KUEUE_CRDS}/kueue.x-k8s.io_{plural}.yaml": f"kueue.x-k8s.io_{plural}.yaml" for plural in (
            "resourceflavors", "clusterqueues", "localqueues", "cohorts", "workloadpriorityclasses")},
        "charts/kueue/values.yaml": "values.yaml",
    }, {versions.KUEUE_CHART: "values.yaml"}),
    Bundle("jobset", versions.JOBSET_VERSION, "kubernetes-sigs/jobset", f"v{versions.JOBSET_VERSION}", {
        "charts/jobset/crds/jobset.x-k8s.io_jobsets.yaml": "jobset.x-k8s.io_jobsets.yaml",
        "charts/jobset/values.yaml": "values.yaml",
    }, {versions.JOBSET_CHART: "values.yaml"}),
    Bundle("trainer", versions.TRAINER_VERSION, "kubeflow/trainer", f"v{versions.TRAINER_VERSION}", {
        **{f"manifests/base/crds/trainer.kubeflow.org_{plural}.yaml": f"trainer.kubeflow.org_{plural}.yaml"
           for plural in ("trainjobs", "clustertrainingruntimes", "trainingruntimes")},
        "charts/kubeflow-trainer/values.yaml": "values.yaml",
    }, {versions.TRAINER_CHART: "values.yaml"}, subcharts={"jobset": "jobset"}),
)
"""Every vendored bundle, versions read from infra/versions.py (a bump there points at a directory not vendored yet)."""

REFRESH_HINT = ("run `.venv/bin/python -m tests.conformance.refresh {name}` (needs network, or --from-git DIR with a clone "
                "of github.com/{repo}), review the upstream changes, and commit tests/conformance/{name}/{version}/")
"""How to vendor a bumped version, shown by the suite when a directory is missing."""
