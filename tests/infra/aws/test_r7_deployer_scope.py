"""The deployer policy's resource-scoped statements admit the names the stacks really create.

docs/deployer-policy.json limits some actions by resource ARN pattern (KMS aliases, EKS clusters, the CodeBuild
project); a name outside its pattern is an AccessDenied on the first `pulumi up`, which no render shows.
"""

import fnmatch
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from infra.review.graph import Graph

POLICY = Path(__file__).resolve().parents[3] / "docs" / "deployer-policy.json"
ACCOUNT, REGION = "123456789012", "us-east-1"


def _patterns(action: str, kind: str) -> list[str]:
    """Resource ARN patterns of `kind` (e.g. `alias/`) under which the deployer policy allows `action`."""
    text = POLICY.read_text().replace("ACCOUNT_ID", ACCOUNT).replace("REGION", REGION)
    out = []
    for statement in json.loads(text)["Statement"]:
        if action in statement["Action"]:
            resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            out += [r for r in resources if r == "*" or f":{kind}" in r]
    return out


def _allowed(arn: str, patterns: list[str]) -> bool:
    # IAM ARN matching: `*` and `?` are wildcards within the whole ARN (fnmatch has the same meaning for these two).
    return any(fnmatch.fnmatchcase(arn, p) for p in patterns)


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_deployer_may_create_every_kms_alias_the_stack_has(stack: str, stack_graph: Callable[[str], Graph]) -> None:
    patterns = _patterns("kms:CreateAlias", "alias/")
    assert patterns
    aliases: list[Any] = [r.inputs["name"] for r in stack_graph(stack).of_type("aws:kms/alias:Alias")]
    assert len(aliases) >= 5
    denied = [a for a in aliases if not _allowed(f"arn:aws:kms:{REGION}:{ACCOUNT}:{a}", patterns)]
    assert not denied, f"docs/deployer-policy.json KeyAliases does not admit {denied}"


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_deployer_may_manage_the_cluster_and_start_its_project(stack: str, stack_graph: Callable[[str], Graph]) -> None:
    graph = stack_graph(stack)
    cluster = graph.one("aws:eks/cluster:Cluster").inputs["name"]
    assert _allowed(f"arn:aws:eks:{REGION}:{ACCOUNT}:cluster/{cluster}", _patterns("eks:*", "cluster/"))
    for project in graph.of_type("aws:codebuild/project:Project"):
        arn = f"arn:aws:codebuild:{REGION}:{ACCOUNT}:project/{project.inputs['name']}"
        assert _allowed(arn, _patterns("codebuild:*", "project/")), arn


MSK_LOG_DELIVERY_ACTIONS = (
    "logs:CreateLogDelivery", "logs:GetLogDelivery", "logs:UpdateLogDelivery", "logs:DeleteLogDelivery",
    "logs:ListLogDeliveries", "logs:PutResourcePolicy", "logs:DescribeResourcePolicies", "logs:DescribeLogGroups")
"""What the caller needs on "*" for MSK broker logs to CloudWatch (msk-logging.html: the AmazonMSKFullAccess
policy's log-delivery actions, which have no resource-level permissions, so an ARN-scoped `logs:*` grants none)."""


def _allowed_on_any_resource(action: str) -> bool:
    for statement in json.loads(POLICY.read_text())["Statement"]:
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        if "*" in resources and any(fnmatch.fnmatchcase(action, a) for a in statement["Action"]):
            return True
    return False


def test_deployer_may_deliver_msk_broker_logs_to_cloudwatch(prod: Graph) -> None:
    msk = prod.one("aws:msk/cluster:Cluster").inputs
    assert msk["loggingInfo"]["brokerLogs"]["cloudwatchLogs"]["enabled"] is True
    missing = [a for a in MSK_LOG_DELIVERY_ACTIONS if not _allowed_on_any_resource(a)]
    assert not missing, f"docs/deployer-policy.json LogDelivery lacks {missing} on \"*\": MSK CreateCluster fails"
