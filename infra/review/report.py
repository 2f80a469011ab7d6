"""Present policy verdicts: terminal text grouped by level, JSON, and Markdown for PR comments."""

from __future__ import annotations

import json
from collections.abc import Sequence
from enum import StrEnum
from typing import Any
from xml.etree import ElementTree

from pulumi_policy import Policy
from rich.console import Group
from rich.table import Table
from rich.text import Text

from infra.review.policy import Violation


class Format(StrEnum):
    """The output formats of `modelplane policy --format`."""

    TEXT = "text"
    JSON = "json"
    SARIF = "sarif"
    JUNIT = "junit"


LEVELS = ("mandatory", "advisory")
"""Levels in the order they are shown (a remediation that still fails shows as mandatory)."""
_MARK = {"mandatory": ("✗", "bold red"), "advisory": ("!", "yellow")}


def counts(violations: Sequence[Violation]) -> dict[str, int]:
    """Violations per level."""
    return {level: sum(1 for v in violations if v.level == level) for level in LEVELS}


def passed(violations: Sequence[Violation]) -> bool:
    """True when no mandatory rule is violated (advisory findings do not fail a stack)."""
    return counts(violations)["mandatory"] == 0


def summary_line(violations: Sequence[Violation]) -> str:
    """`2 mandatory, 1 advisory` or `no violations`."""
    found = counts(violations)
    if not violations:
        return "no violations"
    return ", ".join(f"{n} {level}" for level, n in found.items() if n)


def to_dict(stack: str, violations: Sequence[Violation], rules: int) -> dict[str, Any]:
    """The JSON document of one stack's verdict."""
    return {"stack": stack, "rules": rules, "passed": passed(violations), **counts(violations),
            "violations": [v.to_dict() for v in violations]}


def to_text(stack: str, violations: Sequence[Violation], rules: int) -> Group:
    """Terminal output: a verdict line, then each violation (URN, rule, message) grouped by level."""
    verdict = Text.assemble(("policy ", "bold"), (stack, "bold"), f": {rules} rules, ",
                            (summary_line(violations), "green" if not violations else "red" if not passed(violations)
                             else "yellow"))
    parts: list[Text] = [verdict]
    for level in LEVELS:
        chosen = [v for v in violations if v.level == level]
        if not chosen:
            continue
        mark, style = _MARK[level]
        parts.append(Text(level.upper(), style=style))
        for violation in chosen:
            parts.append(Text.assemble(f"  {mark} ", (violation.rule, style), "  ", violation.urn or "(stack)"))
            parts.append(Text(f"      {violation.message}"))
    return Group(*parts)


def to_markdown(violations: Sequence[Violation]) -> str:
    """A Markdown table of the violations (empty string when there are none)."""
    if not violations:
        return ""
    rows = ["| level | rule | resource | message |", "|---|---|---|---|"]
    for v in violations:
        resource = v.urn.rsplit("::", 1)[-1] if v.urn else "(stack)"
        message = v.message.replace("|", "\\|")
        rows.append(f"| {v.level} | `{v.rule}` | `{resource}` | {message} |")
    return "\n".join(rows)


SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
"""The SARIF 2.1.0 schema GitHub code scanning accepts (docs.github.com, "SARIF support for code scanning")."""
_SARIF_LEVEL = {"mandatory": "error", "advisory": "warning"}


def _level(policy: Policy) -> str:
    return policy.enforcement_level.value if policy.enforcement_level else "advisory"


def to_sarif(stack: str, violations: Sequence[Violation], policies: Sequence[Policy], location: str) -> str:
    """A SARIF 2.1.0 log: one rule per policy, one result per violation, located at the stack's config file."""
    rules = [{"id": p.name, "shortDescription": {"text": p.description},
              "defaultConfiguration": {"level": _SARIF_LEVEL.get(_level(p), "note")}} for p in policies]
    results = [{"ruleId": v.rule, "level": _SARIF_LEVEL.get(v.level, "note"),
                "message": {"text": f"{v.urn.rsplit('::', 1)[-1] if v.urn else stack}: {v.message}"},
                "locations": [{"physicalLocation": {"artifactLocation": {"uri": location}}}],
                "partialFingerprints": {"resource": v.urn or stack}} for v in violations]
    log = {"$schema": SARIF_SCHEMA, "version": "2.1.0",
           "runs": [{"tool": {"driver": {"name": "modelplane policy", "rules": rules}}, "results": results}]}
    return json.dumps(log, indent=2)


def to_junit(stack: str, violations: Sequence[Violation], policies: Sequence[Policy]) -> str:
    """JUnit XML: one test case per rule; a mandatory violation is a failure, an advisory one a system-out note."""
    failures = sum(1 for v in violations if v.level == "mandatory")
    suite = ElementTree.Element("testsuite", name=f"policy {stack}", tests=str(len(policies)), failures=str(failures))
    for policy in policies:
        case = ElementTree.SubElement(suite, "testcase", classname=f"policy.{stack}", name=policy.name)
        found = [v for v in violations if v.rule == policy.name]
        for v in (v for v in found if v.level == "mandatory"):
            failure = ElementTree.SubElement(case, "failure", message=v.message, type="mandatory")
            failure.text = v.urn or "(stack)"
        advisories = [f"advisory: {v.urn or '(stack)'}: {v.message}" for v in found if v.level != "mandatory"]
        if advisories:
            ElementTree.SubElement(case, "system-out").text = "\n".join(advisories)
    return ElementTree.tostring(suite, encoding="unicode", xml_declaration=True)


def rule_table(policies: Sequence[Policy]) -> Table:
    """A table of the rules (name, default level, description), sorted by name, for `modelplane policy --list`."""
    table = Table("rule", "level", "description", title=f"{len(policies)} rules", title_justify="left")
    for row in sorted((p.name, _level(p), p.description) for p in policies):
        table.add_row(*row)
    return table
