"""`TrainingOperator`: the Kubeflow training operator v1 (PyTorchJob, TFJob) from its pinned release manifests.

v1 ships no Helm chart, only kustomize overlays. infra/kustomize/training-operator-base builds on the
upstream standalone overlay at the tag in `versions.TRAINING_OPERATOR_REF` and sets the namespace's
Pod Security level; it runs on any cluster (kubeconfig targets). infra/kustomize/training-operator
adds, for EKS, a nodeSelector for the system node group. Pulumi applies one with a kustomize
v2 `Directory` (server-side apply, which the provider enables: the CRDs are too large for
client-side apply). Building it at deploy time fetches the tag from GitHub (kustomize needs `git`).

The overlay creates the namespace, so this component adds its NetworkPolicies (infra/k8s/netpol.py) after it:
default-deny and DNS, then the operator's own needs: the Kubernetes API, and the API server's calls to its
admission webhook. The operator is the only pod there.
"""

from __future__ import annotations

from typing import Final

import pulumi
import pulumi_kubernetes as k8s

from infra.k8s.netpol import allow_spec, from_anywhere, namespace_baseline, network_policy, select, to_kube_api

KUSTOMIZATION_DIR: Final = "infra/kustomize/training-operator"
"""The EKS overlay (operator on the system node group), relative to the project root (where Pulumi runs the
program and the kustomize build) so renders are machine-independent."""
PORTABLE_KUSTOMIZATION_DIR: Final = "infra/kustomize/training-operator-base"
"""The overlay for any cluster (no node-pool pin): kind, minikube and k3d nodes carry no modelplane.io/pool label."""
NAMESPACE: Final = "kubeflow"
"""The namespace the upstream standalone overlay installs into."""
WEBHOOK_PORT: Final = 9443
"""The operator's admission webhook port: its Service's `webhook-server` port 443 targets it (manifests/base of
kubeflow/trainer at TRAINING_OPERATOR_REF)."""


class TrainingOperator(pulumi.ComponentResource):
    """The Kubeflow training operator v1 in its own namespace (on the system node group with the EKS overlay)."""

    namespace: str
    """The operator's namespace (kubeflow)."""

    def __init__(self, name: str, *, system_pool: bool = True, opts: pulumi.ResourceOptions | None = None) -> None:
        """`system_pool` applies the EKS overlay (KUSTOMIZATION_DIR), which pins the operator to the system node
        group; false applies PORTABLE_KUSTOMIZATION_DIR, for clusters whose nodes carry no pool label."""
        super().__init__("modelplane:training:TrainingOperator", name, None, opts)
        directory = KUSTOMIZATION_DIR if system_pool else PORTABLE_KUSTOMIZATION_DIR
        manifests = k8s.kustomize.v2.Directory(f"{name}-manifests", directory=directory,
                                               opts=pulumi.ResourceOptions(parent=self))
        after = pulumi.ResourceOptions(parent=self, depends_on=[manifests])
        namespace_baseline(f"{name}-{NAMESPACE}", NAMESPACE, after)
        network_policy(f"{name}-operator-netpol", policy_name="training-operator", namespace=NAMESPACE, opts=after,
                       spec=allow_spec(select(), ingress_rules=[from_anywhere(WEBHOOK_PORT)],
                                       egress_rules=[to_kube_api()]))
        self.namespace = NAMESPACE
        self.register_outputs({"namespace": self.namespace})
