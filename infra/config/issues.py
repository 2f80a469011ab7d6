"""pydantic validation errors as `ConfigIssue`s at full `modelplane:` key paths, with the allowed keys for a typo."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import get_args, get_origin

from pydantic import BaseModel, ValidationError

from infra.config.base import Section
from infra.config.errors import ConfigIssue

NAMESPACE = "modelplane"
"""The Pulumi config namespace of every platform key (`modelplane:<key>`)."""


def key_path(section: str, loc: tuple[int | str, ...]) -> str:
    """`modelplane:<section>` followed by `loc` as `.key` and `[index]` parts."""
    out = f"{NAMESPACE}:{section}"
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def pydantic_issues(
    section: str, model: type[Section], exc: ValidationError, prefix: tuple[int | str, ...]
) -> list[ConfigIssue]:
    """One issue per error of `exc` (raised validating `model` at `section` + `prefix`), with the value it got."""
    issues = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        if err["type"] == "extra_forbidden":
            issues.append(ConfigIssue(key_path(section, prefix + loc), _unknown_key_message(model, loc)))
            continue
        got = err.get("input")
        shown = "" if isinstance(got, (dict, list)) else f" (got {got!r})"
        issues.append(ConfigIssue(key_path(section, prefix + loc), f"{err['msg']}{shown}"))
    return issues


def _unknown_key_message(model: type[Section], loc: tuple[int | str, ...]) -> str:
    # Walk the model tree along loc to find which keys were allowed where the unknown one sat.
    current: type[BaseModel] | None = model
    for part in loc[:-1]:
        if current is None or isinstance(part, int):
            continue
        field = next((f for n, f in current.model_fields.items() if (f.alias or n) == part), None)
        annotation = field.annotation if field else None
        # A list of entries (training.jobs): the unknown key sat in one entry.
        annotation = next(iter(get_args(annotation)), None) if get_origin(annotation) is list else annotation
        current = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
    allowed = sorted(f.alias or n for n, f in current.model_fields.items()) if current else []
    key = str(loc[-1])
    moved: Mapping[str, str] = getattr(current, "MOVED_KEYS", {})
    if key in moved:
        return f"has moved to {moved[key]}; set it there and remove it here"
    hint = difflib.get_close_matches(key, allowed, n=1)
    suggestion = f"; did you mean {hint[0]!r}?" if hint else ""
    return f"unknown key {key!r}{suggestion} Allowed keys: {', '.join(allowed)}"
