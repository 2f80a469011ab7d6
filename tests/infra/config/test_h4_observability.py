"""Config rules for alert routing (`observability.alerting`) and the DCGM scrape interval's bounds."""

from typing import Any

import pytest

from infra.config.errors import ConfigError
from infra.config.parse import parse_config
from tests.support.graph import stack_config_with

PAGER = {"type": "pagerduty", "secret": "alertmanager-pagerduty", "key": "routing-key"}
SLACK = {"type": "slack", "secret": "alertmanager-slack", "key": "webhook-url"}

# (description, stack, changes deep-merged into it, expected key path, expected message start)
INVALID: list[tuple[str, str, dict[str, Any], str, str]] = [
    ("prod without receivers", "prod", {"modelplane:observability": {"alerting": []}},
     "modelplane:observability.alerting",
     "must list a receiver taking critical alerts in a production stack (got []); they would reach no one: add e.g. "
     "{type: pagerduty, secret: alertmanager-pagerduty, key: routing-key}"),
    ("prod with warning receivers only", "prod",
     {"modelplane:observability": {"alerting": [{**SLACK, "severities": ["warning"]}]}},
     "modelplane:observability.alerting", "must list a receiver taking critical alerts in a production stack (got ['slack'])"),
    ("receivers without Alertmanager", "dev", {"modelplane:observability": {"alertmanager": False, "alerting": [PAGER]}},
     "modelplane:observability.alerting",
     "has no effect with alertmanager false (got 1 receivers); set alertmanager: true or remove alerting"),
    ("unknown receiver type", "dev", {"modelplane:observability": {"alerting": [{**PAGER, "type": "opsgenie"}]}},
     "modelplane:observability.alerting[0].type", "Input should be 'pagerduty', 'slack' or 'webhook'"),
    ("unknown severity", "dev", {"modelplane:observability": {"alerting": [{**PAGER, "severities": ["page"]}]}},
     "modelplane:observability.alerting[0].severities[0]", "Input should be 'critical' or 'warning'"),
    ("no severity", "dev", {"modelplane:observability": {"alerting": [{**PAGER, "severities": []}]}},
     "modelplane:observability.alerting[0].severities", "List should have at least 1 item"),
    ("severity twice", "dev",
     {"modelplane:observability": {"alerting": [{**PAGER, "severities": ["critical", "critical"]}]}},
     "modelplane:observability.alerting[0].severities", "lists a severity twice (got ['critical', 'critical'])"),
    ("Secret name not a Kubernetes name", "dev",
     {"modelplane:observability": {"alerting": [{**PAGER, "secret": "PagerDuty_Key"}]}},
     "modelplane:observability.alerting[0].secret", "String should match pattern"),
    ("channel on a PagerDuty receiver", "dev",
     {"modelplane:observability": {"alerting": [{**PAGER, "channel": "#ops"}]}},
     "modelplane:observability.alerting[0].channel", "applies only to type slack (got type 'pagerduty'); remove it"),
    ("a key where a URL was meant", "dev",
     {"modelplane:observability": {"alerting": [{**SLACK, "webhookUrl": "https://hooks.slack.com/x"}]}},
     "modelplane:observability.alerting[0].webhookUrl", "unknown key 'webhookUrl'"),
    ("DCGM scrape interval zero", "dev", {"modelplane:addons": {"dcgmScrapeInterval": "0s"}},
     "modelplane:addons.dcgmScrapeInterval", "must be from 1s to 1m (got '0s')"),
    ("DCGM scrape interval of 10 minutes", "dev", {"modelplane:addons": {"dcgmScrapeInterval": "10m"}},
     "modelplane:addons.dcgmScrapeInterval", "must be from 1s to 1m (got '10m'): the GPU alerts need several samples"),
    ("DCGM scrape interval of 61 seconds", "dev", {"modelplane:addons": {"dcgmScrapeInterval": "61s"}},
     "modelplane:addons.dcgmScrapeInterval", "must be from 1s to 1m (got '61s')"),
]


@pytest.mark.parametrize(("stack", "changes", "path", "message"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_rule_names_its_key_path_and_value(stack: str, changes: dict[str, Any], path: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(stack, stack_config_with(stack, changes))
    messages = {issue.path: issue.message for issue in info.value.issues}
    assert path in messages, messages
    assert messages[path].startswith(message), messages[path]


@pytest.mark.parametrize(("stack", "changes"), [
    ("dev", {}),  # dev and staging may leave alerting off
    ("staging", {}),
    ("prod", {}),  # prod's stack file pages through PagerDuty
    ("prod", {"modelplane:observability": {"alerting": [{**SLACK, "severities": ["critical"]}]}}),
    ("dev", {"modelplane:observability": {"alerting": [{**SLACK, "channel": "#ml-alerts"}]}}),
    ("dev", {"modelplane:addons": {"dcgmScrapeInterval": "1m"}}),
    ("dev", {"modelplane:addons": {"dcgmScrapeInterval": "60s"}}),
    ("dev", {"modelplane:addons": {"dcgmScrapeInterval": "1s"}}),
])
def test_valid_settings_parse(stack: str, changes: dict[str, Any]) -> None:
    parse_config(stack, stack_config_with(stack, changes))
