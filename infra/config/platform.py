"""Stack config for the platform services: `modelplane:mesh` (Istio) and `modelplane:observability`.

Both sections apply to every target. `enabled` left unset is resolved by infra/config/parse.py:
on for `aws` stacks, off for `kubeconfig` (local) stacks, where a stack turns them on with
`enabled: true`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from infra import versions
from infra.config.base import Section, not_one_of


class MeshConfig(Section):
    """`modelplane:mesh`: Istio with STRICT mTLS and default-deny authorization."""

    enabled: bool | None = None
    """Install the mesh. Unset: true on aws stacks, false on kubeconfig (local) stacks (resolved by the parser)."""
    version: str = versions.ISTIO_VERSION
    """Istio version of all its charts (base, cni, istiod, gateway) at once; there is no per-chart version.
    Defaults to the pinned one. Valid values: versions.ISTIO_VERSIONS."""
    gateway_scheme: Literal["internal", "internet-facing"] = "internal"
    """Scheme of the ingress gateway's NLB. Defaults to internal. Valid values: internal, internet-facing."""
    replicas: int = Field(default=2, ge=1, le=10)
    """Minimum replicas of istiod and of the ingress gateway. Defaults to 2. Valid: 1 to 10."""

    def checks(self, production: bool) -> list[tuple[str, str]]:
        """A known Istio version; no single point of failure in production."""
        problems = []
        if self.version not in versions.ISTIO_VERSIONS:
            problems.append(("version", "every Istio chart installs at this one version, so it "
                                        + not_one_of(self.version, versions.ISTIO_VERSIONS)))
        if production and self.enabled and self.replicas < 2:
            problems.append(("replicas", f"must be >= 2 in a production stack (got {self.replicas}); one istiod is a "
                                         "single point of failure for sidecar injection"))
        return problems


class ObservabilityConfig(Section):
    """`modelplane:observability`: Prometheus, Alertmanager, Grafana and the HPA's custom metrics."""

    enabled: bool | None = None
    """Install the monitoring stack. Unset: true on aws stacks, false on kubeconfig (local) stacks (resolved by the
    parser)."""
    retention_days: int = Field(default=15, ge=1, le=3650)
    """How long Prometheus keeps samples, in days. Defaults to 15. Valid: 1 to 3650."""
    retention_size_gb: int | None = Field(default=None, ge=1)
    """Cap on Prometheus's data in GiB, below storageGb. Defaults to none (time-based retention only)."""
    storage_gb: int = Field(default=50, ge=0, le=16384)
    """Prometheus volume in GiB (encrypted gp3 on aws, the default class elsewhere); 0 keeps data on an emptyDir.
    Defaults to 50."""
    alertmanager: bool = True
    """Run Alertmanager. Defaults to true."""
    grafana: bool = True
    """Run Grafana with the GPU, training and inference dashboards. Defaults to true."""

    def checks(self, production: bool) -> list[tuple[str, str]]:
        """The size cap fits the volume; production keeps its data and its alerts."""
        problems = []
        if self.retention_size_gb is not None:
            if not self.storage_gb:
                problems.append(("retentionSizeGb", f"has no effect without a volume (storageGb is 0, got "
                                                    f"{self.retention_size_gb}); set storageGb or remove it"))
            elif self.retention_size_gb >= self.storage_gb:
                problems.append(("retentionSizeGb", f"must be below storageGb so the volume never fills (got "
                                                    f"{self.retention_size_gb} >= {self.storage_gb})"))
        if production and self.enabled and not self.storage_gb:
            problems.append(("storageGb", "must be > 0 in a production stack (got 0); metrics would be lost on every "
                                          "Prometheus restart"))
        if production and self.enabled and not self.alertmanager:
            problems.append(("alertmanager", "must be true in a production stack (got false); alerts would reach no one"))
        return problems
