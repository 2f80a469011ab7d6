"""`modelplane:logging`: defaults per target, CloudWatch's retention values, OpenSearch rules, key-path errors."""

from typing import Any

import pytest

from infra.config.errors import ConfigError
from infra.config.logging import CLOUDWATCH_RETENTION_DAYS
from infra.config.parse import parse_config
from tests.support.graph import load_platform_config, stack_config_with

# (description, stack, changes deep-merged into it, expected key path, expected message part)
INVALID: list[tuple[str, str, dict[str, Any], str, str]] = [
    ("retention CloudWatch refuses", "dev", {"modelplane:logging": {"retentionDays": 10}},
     "modelplane:logging.retentionDays", "CloudWatch Logs must be one of 1, 3, 5, 7, 14, 30"),
    ("retention not a number", "dev", {"modelplane:logging": {"retentionDays": "forever"}},
     "modelplane:logging.retentionDays", "Input should be a valid integer"),
    ("unknown key", "dev", {"modelplane:logging": {"retentionDay": 30}},
     "modelplane:logging.retentionDay", "did you mean 'retentionDays'?"),
    ("unknown OpenSearch key", "dev", {"modelplane:logging": {"openSearch": {"nodes": 3}}},
     "modelplane:logging.openSearch.nodes", "unknown key 'nodes'"),
    ("not an OpenSearch instance type", "dev", {"modelplane:logging": {"openSearch": {"instanceType": "r7g.large"}}},
     "modelplane:logging.openSearch.instanceType", "must be an OpenSearch instance type like r7g.large.search"),
    ("nodes not spread evenly", "dev", {"modelplane:logging": {"openSearch": {
        "zoneAwareness": True, "availabilityZones": 3, "instanceCount": 4}}},
     "modelplane:logging.openSearch.instanceCount", "must be a multiple of availabilityZones (3)"),
    ("single-AZ OpenSearch in production", "prod", {"modelplane:logging": {"openSearch": {"zoneAwareness": False}}},
     "modelplane:logging.openSearch.zoneAwareness", "must be true with dedicatedMasters: true in a production stack"),
    ("logs' KMS cannot be turned off", "dev", {"modelplane:logging": {"kms": False}},
     "modelplane:logging.kms", "unknown key 'kms'"),
    ("OpenSearch without AWS", "local", {"modelplane:logging": {"openSearch": {"enabled": True}}},
     "modelplane:logging.openSearch.enabled", "has no effect with target 'kubeconfig'"),
]


@pytest.mark.parametrize(("stack", "changes", "path", "message"), [case[1:] for case in INVALID],
                         ids=[case[0] for case in INVALID])
def test_invalid_logging_config_names_its_key_path(stack: str, changes: dict[str, Any], path: str,
                                                    message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(stack, stack_config_with(stack, changes))
    found = [str(issue) for issue in caught.value.issues if issue.path == path]
    assert found, f"no issue at {path}: {caught.value}"
    assert any(message in text for text in found), found


def test_logging_is_on_for_aws_and_off_for_kubeconfig_unless_asked() -> None:
    aws = parse_config("dev", stack_config_with("dev", {"modelplane:logging": None}))
    local = parse_config("local", stack_config_with("local", {"modelplane:logging": None}))
    assert (aws.logging.enabled, local.logging.enabled) == (True, False)
    assert (aws.logging.retention_days, aws.logging.open_search.enabled) == (30, False)


def test_every_cloudwatch_retention_value_is_accepted() -> None:
    for days in CLOUDWATCH_RETENTION_DAYS:
        config = parse_config("dev", stack_config_with("dev", {"modelplane:logging": {"retentionDays": days}}))
        assert config.logging.retention_days == days


def test_real_stacks_enable_logging_with_opensearch_in_prod_only() -> None:
    configs = {stack: load_platform_config(stack) for stack in ("local", "dev", "staging", "prod")}
    assert all(c.logging.enabled for c in configs.values())
    assert [s for s, c in configs.items() if c.logging.open_search.enabled] == ["prod"]
    search = configs["prod"].logging.open_search
    assert (search.zone_awareness, search.dedicated_masters, search.instance_count) == (True, True, 3)
