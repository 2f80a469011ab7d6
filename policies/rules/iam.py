"""IAM identity policies: no wildcard actions (full or partial), no iam:PassRole on any role, no admin-style managed policies.

A partial wildcard (`s3:Put*`, `ec2:Describe*`, `s3:*Object`, `?` too) grants every action AWS adds under
that pattern later, so it needs the same review as `s3:*`: an entry in `allowedWildcardActions`. Matching is
case-insensitive, as IAM's is (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_action.html).
No stack renders a partial wildcard today (Karpenter's controller policy lists its Describe calls one by one),
so the allowlist is empty by default.

Only identity policies are judged (policies attached to roles, users and groups). Resource
policies such as bucket, key and queue policies use `Deny s3:*`-style statements on purpose.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Final

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
)

from policies.wire import as_list, policy_document, setting, statements

POLICY_DOCUMENT_TYPES: Final = frozenset({
    "aws:iam/policy:Policy", "aws:iam/rolePolicy:RolePolicy", "aws:iam/userPolicy:UserPolicy",
    "aws:iam/groupPolicy:GroupPolicy",
})
ATTACHMENT_TYPES: Final = frozenset({
    "aws:iam/rolePolicyAttachment:RolePolicyAttachment", "aws:iam/userPolicyAttachment:UserPolicyAttachment",
    "aws:iam/groupPolicyAttachment:GroupPolicyAttachment", "aws:iam/policyAttachment:PolicyAttachment",
})
ROLE: Final = "aws:iam/role:Role"


def _documents(args: ResourceValidationArgs) -> Iterator[tuple[str, Mapping[str, Any] | None]]:
    if args.resource_type in POLICY_DOCUMENT_TYPES:
        yield "policy", policy_document(args.props.get("policy"))
    elif args.resource_type == ROLE:
        for i, inline in enumerate(as_list(args.props.get("inlinePolicies"))):
            yield f"inlinePolicies[{inline.get('name', i)}]", policy_document(inline.get("policy"))


def _allow_statements(args: ResourceValidationArgs) -> Iterator[tuple[str, int, Mapping[str, Any]]]:
    for where, document in _documents(args):
        for i, statement in enumerate(statements(document)):
            if statement.get("Effect") == "Allow":
                yield where, i, statement


def _label(where: str, index: int, statement: Mapping[str, Any]) -> str:
    sid = statement.get("Sid")
    return f"{where} statement {sid!r}" if sid else f"{where} statement #{index}"


_WILDCARD_SCHEMA = PolicyConfigSchema(properties={
    "allowedWildcardActions": {
        "type": "array", "items": {"type": "string", "pattern": "^[A-Za-z0-9-]+:[A-Za-z0-9*?]+$"}, "default": [],
        "description": "service:pattern wildcard actions tolerated anyway, e.g. ['ec2:Describe*', 'logs:*']; an entry "
                       "also covers narrower patterns it matches (ec2:Describe* covers ec2:DescribeInstance*); only its '*' "
                       "covers an action's '*'.",
    },
    "deniedManagedPolicies": {
        "type": "array", "items": {"type": "string"},
        "default": ["AdministratorAccess", "PowerUserAccess", "IAMFullAccess"],
        "description": "AWS-managed policy names that grant everything (or all of IAM) and may not be attached.",
    },
})


def _is_wildcard(action: str) -> bool:
    return "*" in action or "?" in action


def _covers(entry: str) -> re.Pattern[str]:
    """A regex that matches the action patterns an allowlist entry covers: every action they match, it matches.

    The action's own wildcards are characters here, so only a `*` of the entry may stand for an action's `*`
    (`ec2:Describe?` must not approve `ec2:Describe*`); an entry's `?` stands for one literal or one `?`.
    Conservative: an equivalent spelling (`s3:a*?` for `s3:a?*`) is not recognized and stays reported.
    """
    parts = {"*": ".*", "?": "[^*]"}
    return re.compile("".join(parts.get(c) or re.escape(c) for c in entry.lower()))


def _allowed(action: str, allowlist: Iterable[str]) -> bool:
    return any(_covers(entry).fullmatch(action.lower()) for entry in allowlist)


def _wildcard_actions(args: ResourceValidationArgs, report: ReportViolation) -> None:
    allowed = setting(args, _WILDCARD_SCHEMA, "allowedWildcardActions")
    for where, i, statement in _allow_statements(args):
        if "NotAction" in statement:
            report(f"IAM {args.resource_type.rsplit(':', 1)[-1]} '{args.name}': {_label(where, i, statement)} allows "
                   f"everything except NotAction {as_list(statement['NotAction'])}. Fix: list the actions the "
                   f"workload needs under Action.", args.urn)
        wild = [a for a in map(str, as_list(statement.get("Action"))) if _is_wildcard(a) and not _allowed(a, allowed)]
        if wild:
            report(f"IAM {args.resource_type.rsplit(':', 1)[-1]} '{args.name}': {_label(where, i, statement)} allows "
                   f"wildcard actions {wild}, which grow with every action AWS adds. Fix: list the specific actions "
                   f"(build the policy from grant_* helpers), or add a reviewed service:pattern to the rule's "
                   f"allowedWildcardActions.", args.urn)
    denied = {f"arn:aws:iam::aws:policy/{name}" for name in setting(args, _WILDCARD_SCHEMA, "deniedManagedPolicies")}
    arns = [str(args.props.get("policyArn"))] if args.resource_type in ATTACHMENT_TYPES else []
    if args.resource_type == ROLE:
        arns += [str(a) for a in as_list(args.props.get("managedPolicyArns"))]
    for arn in arns:
        if arn in denied:
            report(f"IAM '{args.name}' attaches {arn}, which allows every action it covers. Fix: attach a "
                   f"least-privilege policy instead.", args.urn)


def _grants_pass_role(statement: Mapping[str, Any]) -> bool:
    return any(fnmatch.fnmatch("iam:passrole", str(a).lower()) for a in as_list(statement.get("Action")))


def _any_role(resource: str) -> bool:
    return resource == "*" or resource.endswith(":role/*") or resource.endswith(":*")


def _pass_role(args: ResourceValidationArgs, report: ReportViolation) -> None:
    for where, i, statement in _allow_statements(args):
        if not _grants_pass_role(statement):
            continue
        resources = [str(r) for r in as_list(statement.get("Resource"))]
        broad = [r for r in resources if _any_role(r)]
        if broad or "NotResource" in statement:
            report(f"IAM '{args.name}': {_label(where, i, statement)} allows iam:PassRole on "
                   f"{broad or 'NotResource'}, letting the holder hand any role (even an admin one) to a service. "
                   f"Fix: limit Resource to the role ARNs it must pass and add an iam:PassedToService condition.", args.urn)


IAM_NO_WILDCARD_ACTIONS = ResourceValidationPolicy(
    name="iam-no-wildcard-actions",
    description="IAM identity policies name their actions: no '*', 's3:*' or unlisted 's3:Put*', no NotAction, "
                "no admin policies.",
    validate=_wildcard_actions, enforcement_level=EnforcementLevel.MANDATORY, config_schema=_WILDCARD_SCHEMA,
    url="https://docs.aws.amazon.com/IAM/latest/UserGuide/best-practices.html#grant-least-privilege",
)
IAM_NO_PASSROLE_WILDCARD = ResourceValidationPolicy(
    name="iam-no-passrole-wildcard",
    description="iam:PassRole is granted only on specific role ARNs, never on '*'.",
    validate=_pass_role, enforcement_level=EnforcementLevel.MANDATORY,
    url="https://docs.aws.amazon.com/IAM/latest/UserGuide/id_roles_use_passrole.html",
)

POLICIES: Final = (IAM_NO_WILDCARD_ACTIONS, IAM_NO_PASSROLE_WILDCARD)
"""The IAM rules."""
