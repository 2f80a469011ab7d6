"""IAM rules: wildcard actions, admin managed policies, iam:PassRole on any role."""

import json

import pytest

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


def test_partial_wildcards_and_allowlisted_actions_comply() -> None:
    props = {"policy": doc({"Effect": "Allow", "Action": ["ec2:Describe*", "logs:*"], "Resource": "*"})}
    assert violations(IAM_NO_WILDCARD_ACTIONS, ROLE_POLICY, props, config={"allowedWildcardActions": ["logs:*"]}) == []


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
