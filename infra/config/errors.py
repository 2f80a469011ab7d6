"""Errors that name the offending config key, the value and the fix."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class ConfigIssue:
    """One problem in stack config, at a `modelplane:` key path."""

    path: str
    """Full key path, e.g. `modelplane:gpuPools[0].maxNodes`."""
    message: str
    """What is wrong, the value, and what is allowed."""

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class ConfigError(ValueError):
    """Stack config is invalid. Carries every issue found, not just the first."""

    def __init__(self, issues: list[ConfigIssue], *, source: str = "") -> None:
        self.issues = sorted(set(issues))
        self.source = source
        header = f"invalid stack config{f' in {source}' if source else ''} ({len(self.issues)} error(s)):"
        super().__init__("\n".join([header, *(f"  {issue}" for issue in self.issues)]))
