"""Stack config for the platform services: `modelplane:mesh` (Istio) and `modelplane:observability`.

Both sections apply to every target. `enabled` left unset is resolved by infra/config/parse.py:
on for `aws` stacks, off for `kubeconfig` (local) stacks, where a stack turns them on with
`enabled: true`.
"""

from __future__ import annotations

from typing import Final, Literal, get_args

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


AlertSeverity = Literal["critical", "warning"]
"""The `severity` labels our alert rules carry (infra/k8s/rules/*.yaml); each is routed to the receivers taking it."""
ALERT_SEVERITIES: Final = get_args(AlertSeverity)
"""The alert severities, in routing order."""
_K8S_NAME = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
_SECRET_KEY = r"^[-._a-zA-Z0-9]+$"


class AlertReceiver(Section):
    """One destination of alerts: a PagerDuty service, a Slack channel or an HTTPS webhook. Its routing key or URL
    stays out of the stack config: it is the `key` of the Kubernetes Secret `secret` in the monitoring namespace,
    which Alertmanager reads as a file."""

    type: Literal["pagerduty", "slack", "webhook"]
    """pagerduty (an Events API v2 integration's routing key), slack (an incoming-webhook URL) or webhook (an HTTPS
    URL that gets Alertmanager's JSON payload): Alertmanager's pagerduty_configs `routing_key_file`, slack_configs
    `api_url_file`, webhook_configs `url_file` (prometheus/alertmanager v0.34.0, the chart's image)."""
    secret: str = Field(pattern=_K8S_NAME, max_length=253)
    """Name of the Secret in the `monitoring` namespace holding the routing key or URL; created out of band
    (`kubectl -n monitoring create secret generic ...`); Alertmanager does not start until it exists."""
    key: str = Field(pattern=_SECRET_KEY, max_length=253)
    """The Secret's key holding the routing key (pagerduty) or the URL (slack, webhook)."""
    severities: list[AlertSeverity] = Field(default=list(ALERT_SEVERITIES), min_length=1)
    """Which alerts this receiver gets, by their `severity` label. Defaults to both. Valid values: critical, warning."""
    channel: str | None = None
    """Slack only: a channel (#name) or user (@name) overriding the webhook's own channel. Defaults to none."""

    def checks(self) -> list[tuple[str, str]]:
        """A channel only on a slack receiver; each severity once."""
        problems = []
        if self.channel is not None and self.type != "slack":
            problems.append(("channel", f"applies only to type slack (got type {self.type!r}); remove it"))
        if len(set(self.severities)) != len(self.severities):
            problems.append(("severities", f"lists a severity twice (got {self.severities}); list each once"))
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
    alerting: list[AlertReceiver] = []
    """Where Alertmanager sends alerts: critical ones to the receivers taking `critical`, the rest (warning, or no
    severity) to those taking `warning`; info alerts and the Watchdog/InfoInhibitor heartbeats go nowhere. Defaults to
    none (alerts show in Alertmanager's UI only); a production stack must set one."""

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
        if production and self.enabled and self.alertmanager and not any(
                "critical" in receiver.severities for receiver in self.alerting):
            got = [receiver.type for receiver in self.alerting]
            problems.append(("alerting", f"must list a receiver taking critical alerts in a production stack (got "
                                         f"{got}); they would reach no one: add e.g. {{type: pagerduty, secret: "
                                         "alertmanager-pagerduty, key: routing-key}"))
        if self.alerting and not self.alertmanager:
            problems.append(("alerting", f"has no effect with alertmanager false (got {len(self.alerting)} "
                                         "receivers); set alertmanager: true or remove alerting"))
        for i, receiver in enumerate(self.alerting):
            problems += [(f"alerting[{i}].{key}", message) for key, message in receiver.checks()]
        return problems
