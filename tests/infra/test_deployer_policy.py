"""docs/deployer-policy.json: valid IAM JSON that covers every AWS service the stacks create, and no wider than that."""

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from infra.review.graph import Graph

POLICY = Path(__file__).resolve().parents[2] / "docs" / "deployer-policy.json"
PLACEHOLDERS = {"ACCOUNT_ID", "REGION", "STATE_BUCKET"}
"""What the README's `sed` replaces before `aws iam create-policy`."""
MANAGED_POLICY_LIMIT = 6144
"""Characters (whitespace excluded) in a customer managed policy: IAM and STS quotas, IAM User Guide."""
IAM_PREFIX = {
    "cloudwatch": ("events", "logs"), "codebuild": ("codebuild",), "ec2": ("ec2",), "vpc": ("ec2",), "ecr": ("ecr",),
    "eks": ("eks",), "elasticache": ("elasticache",), "iam": ("iam",), "kms": ("kms",), "msk": ("kafka",),
    "opensearch": ("es",), "s3": ("s3",), "secretsmanager": ("secretsmanager",), "sqs": ("sqs",),
}
"""pulumi-aws module of a resource type → the IAM action prefixes its create/update/delete calls use."""


@pytest.fixture(scope="module")
def policy() -> dict[str, Any]:
    """The policy document with its placeholders filled in, as the README's command does."""
    text = POLICY.read_text()
    assert set(re.findall(r"\b[A-Z][A-Z_]{4,}\b", text)) == PLACEHOLDERS
    for key, value in {"ACCOUNT_ID": "123456789012", "REGION": "us-east-1", "STATE_BUCKET": "acme-state"}.items():
        text = text.replace(key, value)
    return json.loads(text)


def _allowed_prefixes(policy: dict[str, Any]) -> set[str]:
    return {action.split(":")[0] for s in policy["Statement"] if s["Effect"] == "Allow" for action in s["Action"]}


def test_is_a_valid_policy_document_small_enough_for_a_managed_policy(policy: dict[str, Any]) -> None:
    assert policy["Version"] == "2012-10-17"
    sids = [s["Sid"] for s in policy["Statement"]]
    assert len(sids) == len(set(sids)) and all(re.fullmatch(r"[A-Za-z0-9]+", sid) for sid in sids)
    for statement in policy["Statement"]:
        assert statement["Effect"] == "Allow" and isinstance(statement["Action"], list)
        assert "*" not in statement["Action"], statement["Sid"]  # never every action of every service
    assert len(json.dumps(policy, separators=(",", ":"))) < MANAGED_POLICY_LIMIT


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_covers_every_aws_service_the_stack_creates(policy: dict[str, Any], stack_graph: Callable[[str], Graph],
                                                    stack: str) -> None:
    modules = {r.type.split(":")[1].split("/")[0] for r in stack_graph(stack).resources if r.type.startswith("aws:")}
    unknown = modules - set(IAM_PREFIX)
    assert not unknown, f"new AWS modules {unknown}: add their IAM actions to docs/deployer-policy.json and here"
    missing = {prefix for m in modules for prefix in IAM_PREFIX[m]} - _allowed_prefixes(policy)
    assert not missing, f"docs/deployer-policy.json grants nothing for {missing}"


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_attaches_exactly_the_managed_policies_the_stack_uses(policy: dict[str, Any],
                                                             stack_graph: Callable[[str], Graph], stack: str) -> None:
    [attach] = [s for s in policy["Statement"] if "iam:AttachRolePolicy" in s["Action"]]
    allowed = set(attach["Condition"]["ArnEquals"]["iam:PolicyARN"])
    used = {a.inputs["policyArn"] for a in stack_graph(stack).of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")}
    assert used <= allowed, f"add {used - allowed} to AttachOnlyTheManagedPoliciesThePlatformUses"


def test_roles_and_keys_are_limited_to_the_project_tag_and_roles_pass_only_to_services(policy: dict[str, Any]) -> None:
    by_sid = {s["Sid"]: s for s in policy["Statement"]}
    # Every statement that can change a role is bound to roles the stack transform tagged project=modelplane.
    for statement in policy["Statement"]:
        if any(a.startswith("iam:") and "Role" in a and a != "iam:PassRole" and a != "iam:CreateServiceLinkedRole"
               for a in statement["Action"]):
            tags = {k for cond in statement["Condition"].values() for k in cond}
            assert tags & {"aws:ResourceTag/project", "aws:RequestTag/project"}, statement["Sid"]
    passed = by_sid["PassRolesToTheServicesThatUseThem"]["Condition"]["StringEquals"]["iam:PassedToService"]
    assert "codebuild.amazonaws.com" in passed and "eks.amazonaws.com" in passed
    assert by_sid["KeysOfThisProjectOnly"]["Condition"] == {"StringEquals": {"aws:ResourceTag/project": "modelplane"}}


def test_can_read_the_state_and_run_only_the_deployer_projects(policy: dict[str, Any]) -> None:
    by_sid = {s["Sid"]: s for s in policy["Statement"]}
    assert by_sid["PulumiState"]["Resource"] == ["arn:aws:s3:::acme-state", "arn:aws:s3:::acme-state/*"]
    assert by_sid["InVpcDeployer"]["Resource"] == "arn:aws:codebuild:us-east-1:123456789012:project/modelplane-*-deployer"
