"""`TrainingOperator`: the Kubeflow training operator v1 (PyTorchJob, TFJob) from its pinned release manifests.

v1 ships no Helm chart, only kustomize overlays. infra/kustomize/training-operator-base builds on the
upstream standalone overlay at the tag in `versions.TRAINING_OPERATOR_REF` and sets the namespace's
Pod Security level; it runs on any cluster (kubeconfig targets). infra/kustomize/training-operator
adds, for EKS, a nodeSelector for the system node group. Pulumi applies one with a kustomize
v2 `Directory` (server-side apply, which the provider enables: the CRDs are too large for
client-side apply). Building it at deploy time fetches the tag from GitHub (kustomize needs `git`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final

import pulumi
import pulumi_kubernetes as k8s

from infra.config.errors import raise_if_invalid

PROJECT_ROOT: Final = Path(__file__).resolve().parents[2]
"""Where Pulumi.yaml lives; Pulumi runs the program (and the kustomize build) from here."""
KUSTOMIZATION_DIR: Final = "infra/kustomize/training-operator"
"""The EKS overlay (operator on the system node group), relative to the project root so renders are
machine-independent."""
PORTABLE_KUSTOMIZATION_DIR: Final = "infra/kustomize/training-operator-base"
"""The overlay for any cluster (no node-pool pin): kind, minikube and k3d nodes carry no modelplane.io/pool label."""
NAMESPACE: Final = "kubeflow"
"""The namespace the upstream standalone overlay installs into."""


@dataclass(frozen=True, kw_only=True)
class TrainingOperatorArgs:
    """Inputs of `TrainingOperator`."""

    directory: str = KUSTOMIZATION_DIR
    """Kustomization to apply, relative to the project root. Defaults to the EKS overlay (KUSTOMIZATION_DIR);
    use PORTABLE_KUSTOMIZATION_DIR on clusters without the system node group."""


class TrainingOperator(pulumi.ComponentResource):
    """The Kubeflow training operator v1 in its own namespace (on the system node group with the EKS overlay)."""

    namespace: str
    """The operator's namespace (kubeflow)."""

    def __init__(self, name: str, args: TrainingOperatorArgs | None = None,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("modelplane:training:TrainingOperator", name, None, opts)
        args = args or TrainingOperatorArgs()
        problems = []
        if Path(args.directory).is_absolute():
            problems.append(("directory", f"must be relative to the project root (got {args.directory!r})"))
        elif not (PROJECT_ROOT / args.directory / "kustomization.yaml").is_file():
            problems.append(("directory", f"has no kustomization.yaml under {PROJECT_ROOT} (got {args.directory!r})"))
        raise_if_invalid("TrainingOperator", problems)
        k8s.kustomize.v2.Directory(f"{name}-manifests", directory=args.directory,
                                   opts=pulumi.ResourceOptions(parent=self))
        self.namespace = NAMESPACE
        self.register_outputs({"namespace": self.namespace})
