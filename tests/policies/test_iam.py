"""IAM rules: wildcard actions, admin managed policies, iam:PassRole on any role."""

import json

import pytest

from infra.review.policy import PolicyConfigError, validate_config
from policies.rules.iam import IAM_NO_PASSROLE_WILDCARD, IAM_NO_WILDCARD_ACTIONS
from tests.policies.helpers import violations

ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"


def doc(*statements: dict) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


SCOPED = doc({"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": "arn:aws:s3:::b/*"},
             {"Effect": "Allow", "Action": "iam:PassRole", "Resource": "arn:aws:iam::1:role/node",
              "Condition": {"StringEquals": {"iam:PassedToService": "ec2.amazonaws.com"}}},
             {"Effect": "Deny", "Action": "*", "Resource": "*"})


@pytest.mark.parametrize("policy", [IAM_NO_WILDCARD_ACTIONS, IAM_NO_PASSROLE_WILDCARD])
def test_least_privilege_policy_complies(policy) -> None:
    assert violations(policy, ROLE_POLICY, {"policy": SCOPED}) == []


@pytest.mark.parametrize("action", ["*", "s3:*", ["s3:GetObject", "iam:*"]])
def test_wildcard_actions_are_reported(action) -> None:
    found = violations(IAM_NO_WILDCARD_ACTIONS, ROLE_POLICY,
                       {"policy": doc({"Sid": "Broad", "Effect": "Allow", "Action": action, "Resource": "*"})})
    assert len(found) == 1 and "'Broad'" in found[0] and "wildcard" in found[0]


def test_not_action_is_reported() -> None:
    found = violations(IAM_NO_WILDCARD_ACTIONS, ROLE_POLICY,
                       {"policy": doc({"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"})})
    assert len(found) == 1 and "NotAction" in found[0]


@pytest.mark.parametrize("action", ["s3:Put*", "ec2:Describe*", "s3:*Object", "s3:Get?bject", "S3:PUT*",
                                    ["s3:GetObject", "kms:Gen*"]])
def test_partial_wildcard_actions_are_reported(action) -> None:
    found = violations(IAM_NO_WILDCARD_ACTIONS, ROLE_POLICY,
                       {"policy": doc({"Sid": "Partial", "Effect": "Allow", "Action": action, "Resource": "*"})})
    assert len(found) == 1 and "'Partial'" in found[0] and "wildcard actions" in found[0]
    assert "allowedWildcardActions" in found[0]


def test_allowlisted_wildcards_comply_and_cover_narrower_patterns() -> None:
    props = {"policy": doc({"Effect": "Allow", "Action": ["ec2:Describe*", "EC2:DescribeInstance*", "logs:*"],
                            "Resource": "*"})}
    config = {"allowedWildcardActions": ["ec2:Describe*", "logs:*"]}
    assert violations(IAM_NO_WILDCARD_ACTIONS, ROLE_POLICY, props, config=config) == []


def test_an_allowlist_entry_does_not_cover_wider_patterns() -> None:
    props = {"policy": doc({"Effect": "Allow", "Action": ["ec2:*", "ec2:Desc*"], "Resource": "*"})}
    found = violations(IAM_NO_WILDCARD_ACTIONS, ROLE_POLICY, props, config={"allowedWildcardActions": ["ec2:Describe*"]})
    assert len(found) == 1 and "['ec2:*', 'ec2:Desc*']" in found[0]


@pytest.mark.parametrize(("entry", "action"), [
    ("ec2:Describe?", "ec2:Describe*"), ("s3:Get?bject", "s3:Get*bject"), ("s3:?et*", "s3:*et*"),
    ("s3:GetObject?", "s3:GetObject*"), ("s3:Get??", "s3:Get?*"),
])
def test_an_entry_question_mark_does_not_cover_an_action_star(entry: str, action: str) -> None:
    props = {"policy": doc({"Effect": "Allow", "Action": [action], "Resource": "*"})}
    found = violations(IAM_NO_WILDCARD_ACTIONS, ROLE_POLICY, props, config={"allowedWildcardActions": [entry]})
    assert len(found) == 1 and f"[{action!r}]" in found[0]


@pytest.mark.parametrize(("entry", "action"), [
    ("ec2:Describe?", "ec2:Describe?"), ("s3:Get?bject", "S3:GET?BJECT"), ("ec2:Describe*", "ec2:Describe?"),
    ("ec2:Describ*", "ec2:Describ?*"), ("s3:*Object", "s3:Get*Object"), ("s3:?et*", "s3:Get*"), ("s3:?et*", "s3:?et*"),
])
def test_an_entry_covers_action_wildcards_under_its_own(entry: str, action: str) -> None:
    props = {"policy": doc({"Effect": "Allow", "Action": [action], "Resource": "*"})}
    assert violations(IAM_NO_WILDCARD_ACTIONS, ROLE_POLICY, props, config={"allowedWildcardActions": [entry]}) == []


def test_partial_wildcards_in_deny_statements_comply() -> None:
    props = {"policy": doc({"Effect": "Deny", "Action": "s3:Delete*", "Resource": "*"})}
    assert violations(IAM_NO_WILDCARD_ACTIONS, ROLE_POLICY, props) == []


def test_inline_role_policies_are_checked() -> None:
    props = {"inlinePolicies": [{"name": "admin", "policy": doc({"Effect": "Allow", "Action": "*", "Resource": "*"})}]}
    found = violations(IAM_NO_WILDCARD_ACTIONS, "aws:iam/role:Role", props)
    assert len(found) == 1 and "inlinePolicies[admin]" in found[0]


def test_admin_managed_policy_attachment_is_reported() -> None:
    attachment = "aws:iam/rolePolicyAttachment:RolePolicyAttachment"
    found = violations(IAM_NO_WILDCARD_ACTIONS, attachment, {"policyArn": "arn:aws:iam::aws:policy/AdministratorAccess"})
    assert len(found) == 1 and "AdministratorAccess" in found[0]
    assert violations(IAM_NO_WILDCARD_ACTIONS, attachment,
                      {"policyArn": "arn:aws:iam::aws:policy/AmazonEKSWorkerNodePolicy"}) == []


@pytest.mark.parametrize(("action", "resource"), [
    ("iam:PassRole", "*"), ("iam:Pass*", "*"), (["iam:PassRole"], "arn:aws:iam::123456789012:role/*"),
])
def test_pass_role_on_any_role_is_reported(action, resource) -> None:
    found = violations(IAM_NO_PASSROLE_WILDCARD, "aws:iam/policy:Policy",
                       {"policy": doc({"Effect": "Allow", "Action": action, "Resource": resource})})
    assert len(found) == 1 and "iam:PassRole" in found[0]


def test_resource_policies_are_out_of_scope() -> None:
    bucket_policy = {"policy": doc({"Effect": "Allow", "Action": "s3:*", "Resource": "*", "Principal": "*"})}
    assert violations(IAM_NO_WILDCARD_ACTIONS, "aws:s3/bucketPolicy:BucketPolicy", bucket_policy) == []


@pytest.mark.parametrize("entry", ["*", "Describe*", "ec2 Describe*"])
def test_the_allowlist_takes_service_patterns_only(entry: str) -> None:
    with pytest.raises(PolicyConfigError, match=r"iam-no-wildcard-actions\.allowedWildcardActions"):
        validate_config({"iam-no-wildcard-actions": {"allowedWildcardActions": [entry]}})
