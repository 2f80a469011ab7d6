"""Alert routing: the `observability.alerting` receivers as kube-prometheus-stack's `alertmanager` values.

The chart's default `alertmanager.config` (kube-prometheus-stack 88.5.3 values.yaml, vendored in
tests/conformance/kube-prometheus-stack/88.5.3/) sends every alert to a receiver named 'null' that has no
integrations. Helm merges our values into those defaults map by map and replaces lists whole, so we set
`route.receiver`, `route.routes` and `receivers` and keep the chart's `global`, `inhibit_rules` (critical mutes
warning and info of the same alert; InfoInhibitor mutes info) and `templates`.

Routing tree (Alertmanager's first matching child route wins):
- Watchdog and InfoInhibitor, the chart's always-firing heartbeats, and `severity="info"|"none"` go to 'null'
  (the chart's own default for Watchdog; InfoInhibitor only serves the inhibit rules);
- `severity="critical"` goes to the receiver 'critical';
- everything else (warning, or a rule without a severity) to the root receiver 'warning', so no alert is dropped
  silently.
Each of 'critical' and 'warning' holds one integration per configured receiver taking that severity.

Keys and routing keys come from Secrets the operator mounts at /etc/alertmanager/secrets/<secret>/<key> (values.yaml
`alertmanager.alertmanagerSpec.secrets`; prometheus-operator pkg/alertmanager/statefulset.go `secretsDir`). Field
names are Alertmanager v0.34.0's (the chart's image): PagerdutyConfig `routing_key_file`, `severity`
(notify/pagerduty/config.go), SlackConfig `api_url_file`, `channel` (config/notifiers.go), WebhookConfig `url_file`
(notify/webhook/config.go), each with `send_resolved` (config/common/notifierconfig.go); Route `receiver`,
`matchers`, `routes` and Receiver `name`, `*_configs` (config/config.go).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from infra.config.platform import ALERT_SEVERITIES, AlertReceiver

SECRETS_DIR: Final = "/etc/alertmanager/secrets"
"""Where the prometheus-operator mounts each Secret of `alertmanagerSpec.secrets` (one folder per Secret)."""
NULL_RECEIVER: Final = "null"
"""The chart's receiver without integrations: alerts routed there are dropped."""
SILENT_ALERTS: Final = ("Watchdog", "InfoInhibitor")
"""The chart's default rules that always fire by design (a dead man's switch, an inhibition helper)."""
SILENT_SEVERITIES: Final = ("info", "none")
"""Severities sent nowhere: informational alerts, and the chart's heartbeats' `none`."""
_CONFIG_KEYS: Final = {"pagerduty": "pagerduty_configs", "slack": "slack_configs", "webhook": "webhook_configs"}


def alertmanager_values(receivers: Sequence[AlertReceiver]) -> dict[str, Any]:
    """The chart's `alertmanager` values (besides `enabled`) routing alerts to `receivers`; none when empty (the
    chart's defaults then stay: every alert visible in Alertmanager's UI, sent nowhere)."""
    if not receivers:
        return {}
    critical, warning = ALERT_SEVERITIES
    quiet = [{"receiver": NULL_RECEIVER, "matchers": [f'alertname = "{name}"']} for name in SILENT_ALERTS]
    quiet.append({"receiver": NULL_RECEIVER, "matchers": [f'severity =~ "{"|".join(SILENT_SEVERITIES)}"']})
    route = {"receiver": warning,
             "routes": [*quiet, {"receiver": critical, "matchers": [f'severity = "{critical}"']}]}
    config_receivers = [{"name": NULL_RECEIVER}] + [_receiver(severity, receivers) for severity in ALERT_SEVERITIES]
    secrets = sorted({receiver.secret for receiver in receivers})
    return {"config": {"route": route, "receivers": config_receivers},
            "alertmanagerSpec": {"secrets": secrets}}


def _receiver(severity: str, receivers: Sequence[AlertReceiver]) -> dict[str, Any]:
    """The Alertmanager receiver `severity`: one integration per configured receiver taking that severity."""
    out: dict[str, Any] = {"name": severity}
    for receiver in receivers:
        if severity in receiver.severities:
            out.setdefault(_CONFIG_KEYS[receiver.type], []).append(_integration(receiver, severity))
    return out


def _integration(receiver: AlertReceiver, severity: str) -> dict[str, Any]:
    path = f"{SECRETS_DIR}/{receiver.secret}/{receiver.key}"
    if receiver.type == "pagerduty":
        # PagerDuty's event severity (critical, error, warning, info); Alertmanager's default is "error".
        return {"routing_key_file": path, "severity": severity, "send_resolved": True}
    if receiver.type == "slack":
        slack: dict[str, Any] = {"api_url_file": path, "send_resolved": True}
        if receiver.channel:
            slack["channel"] = receiver.channel
        return slack
    return {"url_file": path, "send_resolved": True}
