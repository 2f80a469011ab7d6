"""Alert routing: `observability.alerting` becomes kube-prometheus-stack's `alertmanager.config`, merged over the chart's
defaults the way Helm merges values, and every alert reaches the receivers of its severity.

No `amtool` in CI: the merged config is checked against the receiver and route schema of Alertmanager v0.34.0 (the
chart's image) read from its source (config/config.go Route and Receiver, notify/pagerduty/config.go,
config/notifiers.go SlackConfig, notify/webhook/config.go), and routed the way Alertmanager routes (the first
matching child route; the root's receiver otherwise).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra import versions
from infra.config.platform import ObservabilityConfig
from infra.k8s.observability import ALERTMANAGER_POD_LABELS, NAMESPACE, Observability
from infra.review.engine import render_program
from infra.review.graph import HELM_RELEASE, Graph
from tests.support.netpol import NetworkModel, external, pod

VALUES = Path(__file__).parents[2] / "conformance" / "kube-prometheus-stack" / versions.KUBE_PROMETHEUS_STACK_VERSION \
    / "values.yaml"
# Alertmanager v0.34.0: the fields each integration may have (yaml tags) and which of them reads the secret.
INTEGRATION_FIELDS = {
    "pagerduty_configs": ({"send_resolved", "http_config", "service_key", "service_key_file", "routing_key",
                           "routing_key_file", "url", "client", "client_url", "description", "details", "images",
                           "links", "source", "severity", "class", "component", "group", "timeout"}, "routing_key_file"),
    "slack_configs": ({"send_resolved", "http_config", "api_url", "api_url_file", "app_token", "app_token_file",
                       "app_url", "channel", "username", "color", "title", "title_link", "pretext", "text",
                       "message_text", "fields", "short_fields", "footer", "fallback", "callback_id", "icon_emoji",
                       "icon_url", "image_url", "thumb_url", "link_names", "mrkdwn_in", "actions", "update_message",
                       "timeout"}, "api_url_file"),
    "webhook_configs": ({"send_resolved", "http_config", "url", "url_file", "max_alerts", "timeout", "payload"},
                        "url_file"),
}
ROUTE_FIELDS = {"receiver", "group_by", "match", "match_re", "matchers", "mute_time_intervals",
                "active_time_intervals", "continue", "routes", "group_wait", "group_interval", "repeat_interval",
                "labels"}
PAGERDUTY_SEVERITIES = {"critical", "error", "warning", "info"}  # PagerDuty Events API v2
MATCHER = re.compile(r'^(\w+) (=|!=|=~|!~) "?([^"]*)"?$')
RECEIVERS = [
    {"type": "pagerduty", "secret": "am-pagerduty", "key": "routing-key", "severities": ["critical"]},
    {"type": "slack", "secret": "am-slack", "key": "url", "channel": "#ml-alerts"},
    {"type": "webhook", "secret": "am-hook", "key": "url", "severities": ["warning"]},
]


def _render(config: dict[str, Any]) -> Graph:
    def program() -> None:
        Observability("observability", ObservabilityConfig.model_validate(config), storage_class=None,
                      create_storage_class=False, mesh_scraping=False)

    return render_program("test", program)


def _alertmanager_values(graph: Graph) -> dict[str, Any]:
    [release] = [r.inputs for r in graph.of_type(HELM_RELEASE) if r.inputs["chart"] == "kube-prometheus-stack"]
    values: dict[str, Any] = release["values"]["alertmanager"]
    return values


def _helm_merge(default: Any, ours: Any) -> Any:
    """Helm's values coalescing: maps merge key by key, anything else (lists too) is replaced."""
    if isinstance(default, dict) and isinstance(ours, dict):
        return {**default, **{k: _helm_merge(default.get(k), v) for k, v in ours.items()}}
    return ours


def _effective_config(values: dict[str, Any]) -> dict[str, Any]:
    default = yaml.safe_load(VALUES.read_text())["alertmanager"]["config"]
    merged: dict[str, Any] = _helm_merge(default, values.get("config", {}))
    return merged


def _matches(matcher: str, labels: dict[str, str]) -> bool:
    found = MATCHER.match(matcher)
    assert found, f"not a matcher: {matcher!r}"
    name, op, value = found.groups()
    actual = labels.get(name, "")
    hit = actual == value if op in ("=", "!=") else re.fullmatch(value, actual) is not None
    return hit if op in ("=", "=~") else not hit


def _route(config: dict[str, Any], labels: dict[str, str]) -> str:
    for child in config["route"].get("routes", []):
        if all(_matches(m, labels) for m in child.get("matchers", [])):
            return str(child["receiver"])
    return str(config["route"]["receiver"])


def _validate(config: dict[str, Any], secrets: list[str]) -> None:
    """Alertmanager v0.34.0's load-time rules that our values can break."""
    names = [r["name"] for r in config["receivers"]]
    assert len(names) == len(set(names)), names
    root = config["route"]
    assert root["receiver"] and "matchers" not in root  # "root route must not have any matchers"
    for route in [root, *root.get("routes", [])]:
        assert set(route) <= ROUTE_FIELDS, set(route) - ROUTE_FIELDS
        assert route["receiver"] in names, f"undefined receiver {route['receiver']!r}"
    for receiver in config["receivers"]:
        for key, integrations in receiver.items():
            if key == "name":
                continue
            allowed, secret_field = INTEGRATION_FIELDS[key]
            for integration in integrations:
                assert set(integration) <= allowed, set(integration) - allowed
                path = integration[secret_field]
                secret = path.removeprefix("/etc/alertmanager/secrets/").split("/")[0]
                assert secret in secrets, f"{path}: Secret {secret} is not mounted"
                if key == "pagerduty_configs":
                    assert integration["severity"] in PAGERDUTY_SEVERITIES


def test_without_receivers_the_chart_defaults_stay() -> None:
    values = _alertmanager_values(_render({}))
    assert values == {"enabled": True}
    assert _route(_effective_config(values), {"alertname": "GPUXidError", "severity": "critical"}) == "null"


def test_receivers_render_a_valid_config_routed_by_severity() -> None:
    values = _alertmanager_values(_render({"alerting": RECEIVERS}))
    assert values["alertmanagerSpec"]["secrets"] == ["am-hook", "am-pagerduty", "am-slack"]
    config = _effective_config(values)
    _validate(config, values["alertmanagerSpec"]["secrets"])
    receivers = {r["name"]: r for r in config["receivers"]}
    assert receivers["critical"] == {
        "name": "critical",
        "pagerduty_configs": [{"routing_key_file": "/etc/alertmanager/secrets/am-pagerduty/routing-key",
                               "severity": "critical", "send_resolved": True}],
        "slack_configs": [{"api_url_file": "/etc/alertmanager/secrets/am-slack/url", "channel": "#ml-alerts",
                           "send_resolved": True}],
    }
    assert receivers["warning"] == {
        "name": "warning",
        "slack_configs": [{"api_url_file": "/etc/alertmanager/secrets/am-slack/url", "channel": "#ml-alerts",
                           "send_resolved": True}],
        "webhook_configs": [{"url_file": "/etc/alertmanager/secrets/am-hook/url", "send_resolved": True}],
    }
    assert receivers["null"] == {"name": "null"}
    # The chart's inhibit rules and templates are kept.
    default = yaml.safe_load(VALUES.read_text())["alertmanager"]["config"]
    assert config["inhibit_rules"] == default["inhibit_rules"] and config["templates"] == default["templates"]


@pytest.mark.parametrize(("labels", "receiver"), [
    ({"alertname": "GPUXidError", "severity": "critical"}, "critical"),
    ({"alertname": "GPUIdleWhileAllocated", "severity": "warning"}, "warning"),
    ({"alertname": "UserRuleWithoutSeverity"}, "warning"),
    ({"alertname": "CPUThrottlingHigh", "severity": "info"}, "null"),
    ({"alertname": "Watchdog", "severity": "none"}, "null"),
    ({"alertname": "InfoInhibitor", "severity": "none"}, "null"),
])
def test_each_alert_reaches_the_receiver_of_its_severity(labels: dict[str, str], receiver: str) -> None:
    assert _route(_effective_config(_alertmanager_values(_render({"alerting": RECEIVERS}))), labels) == receiver


def test_prod_pages_critical_alerts(stack_graph: Callable[[str], Graph]) -> None:
    values = _alertmanager_values(stack_graph("prod"))
    config = _effective_config(values)
    _validate(config, values["alertmanagerSpec"]["secrets"])
    critical = next(r for r in config["receivers"] if r["name"] == _route(config, {"severity": "critical"}))
    assert critical.get("pagerduty_configs"), critical


ALERTMANAGER = pod(NAMESPACE, {**ALERTMANAGER_POD_LABELS, "alertmanager": "kube-prometheus-stack-alertmanager"},
                   "10.0.3.40")
PAGERDUTY = external("44.242.69.192")


def test_alertmanager_reaches_https_receivers_only_when_configured() -> None:
    with_receivers = NetworkModel(_render({"alerting": RECEIVERS}))
    assert with_receivers.egress_allows(ALERTMANAGER, PAGERDUTY, 443)
    assert not with_receivers.egress_allows(ALERTMANAGER, PAGERDUTY, 80)
    assert not NetworkModel(_render({})).egress_allows(ALERTMANAGER, PAGERDUTY, 443)
