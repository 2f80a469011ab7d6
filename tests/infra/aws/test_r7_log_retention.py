"""Config rules for values AWS refuses only at `pulumi up`: log retentions CloudWatch rejects, a repeated admin role.

PutRetentionPolicy takes only the listed values (infra/config/logging.py CLOUDWATCH_RETENTION_DAYS); any other
number renders fine and then fails `pulumi up` with InvalidParameterException.
"""

from typing import Any

import pytest

from infra.config.errors import ConfigError
from infra.config.logging import CLOUDWATCH_RETENTION_DAYS
from infra.config.parse import parse_config
from tests.support.graph import stack_config_with


@pytest.mark.parametrize(("changes", "path"), [
    ({"modelplane:cluster": {"logRetentionDays": 100}}, "modelplane:cluster.logRetentionDays"),
    ({"modelplane:network": {"flowLogs": {"retentionDays": 45}}}, "modelplane:network.flowLogs.retentionDays"),
], ids=["control-plane and deployer logs", "flow logs"])
def test_a_retention_cloudwatch_refuses_is_a_config_error(changes: dict[str, Any], path: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config("dev", stack_config_with("dev", changes))
    messages = [issue.message for issue in info.value.issues if issue.path == path]
    assert messages, f"{path} not named in:\n{info.value}"
    assert "CloudWatch Logs must be one of 1, 3, 5, 7, 14, 30" in messages[0]
    assert "(got '100')" in messages[0] or "(got '45')" in messages[0]


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_every_rendered_log_group_has_a_retention_cloudwatch_accepts(stack: str, stack_graph) -> None:  # type: ignore[no-untyped-def]
    groups = stack_graph(stack).of_type("aws:cloudwatch/logGroup:LogGroup")
    assert len(groups) >= 5
    bad = [(g.name, g.inputs.get("retentionInDays")) for g in groups
           if g.inputs.get("retentionInDays") not in CLOUDWATCH_RETENTION_DAYS]
    assert not bad, bad


def test_a_repeated_admin_role_is_a_config_error() -> None:
    # EKS holds one access entry per principal: the second AccessEntry of the same role fails `pulumi up`.
    admin = "arn:aws:iam::123456789012:role/platform-admin"
    with pytest.raises(ConfigError) as info:
        parse_config("dev", stack_config_with("dev", {"modelplane:cluster": {"adminRoleArns": [admin, admin]}}))
    messages = [i.message for i in info.value.issues if i.path == "modelplane:cluster.adminRoleArns[1]"]
    assert messages and "repeats adminRoleArns[0]" in messages[0] and admin in messages[0], info.value
