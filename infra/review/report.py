"""Present policy verdicts: terminal text grouped by level, JSON, and Markdown for PR comments."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.console import Group
from rich.text import Text

from infra.review.policy import Violation

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
