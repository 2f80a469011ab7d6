"""Pulumi-style diffs between two offline renders of a stack: the working tree against a git ref.

The base side is rendered by the code *at that ref* (`infra.review.baseline`). Both
sides are `Graph`s, compared by URN: `+` create, `-` delete, `~` update with each changed
property path (`spec.limits["nvidia.com/gpu"]`) and old → new. Secrets are already masked in
the graph, so they never show. Pulumi decides replace-vs-update from provider schemas at
deploy time; offline every in-place difference is shown as an update.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

from rich.console import Group
from rich.text import Text

from infra.review.baseline import BaseRender, BaseRenderJob, DiffError
from infra.review.graph import Graph, Resource

_IDENTIFIER: Final = re.compile(r"^[A-Za-z_$][A-Za-z0-9_$]*$")
_SHOWN_CHARS: Final = 160


class _Missing:
    """Marks the absent side of an added or removed property."""

    def __repr__(self) -> str:
        return "(absent)"


MISSING: Final = _Missing()
"""The old value of an added property, or the new value of a removed one."""


@dataclass(frozen=True)
class PropertyChange:
    """One changed property of an updated resource."""

    path: str
    """Pulumi property path, e.g. `spec.limits["nvidia.com/gpu"]`."""
    old: Any
    """The value at the base (MISSING when the property was added)."""
    new: Any
    """The value in the working tree (MISSING when the property was removed)."""

    def to_dict(self) -> dict[str, Any]:
        """JSON form: path, kind (add/remove/change) and the values that exist."""
        out: dict[str, Any] = {"path": self.path}
        if self.old is MISSING:
            out.update(kind="add", new=self.new)
        elif self.new is MISSING:
            out.update(kind="remove", old=self.old)
        else:
            out.update(kind="change", old=self.old, new=self.new)
        return out


Op = Literal["create", "update", "delete"]


@dataclass(frozen=True)
class ResourceChange:
    """A resource created, deleted or updated between the base and the working tree."""

    op: Op
    """create, update or delete."""
    urn: str
    """The resource URN."""
    type: str
    """The type token."""
    name: str
    """The logical name."""
    changes: tuple[PropertyChange, ...] = ()
    """Changed properties (updates only)."""

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        out: dict[str, Any] = {"op": self.op, "urn": self.urn, "type": self.type, "name": self.name}
        if self.op == "update":
            out["changes"] = [c.to_dict() for c in self.changes]
        return out


@dataclass(frozen=True)
class StackDiff:
    """The diff of one stack."""

    stack: str
    """The stack name."""
    base: str
    """The git ref compared against."""
    changes: tuple[ResourceChange, ...] = ()
    """Creates, updates and deletes, in URN order."""
    unchanged: int = 0
    """Resources identical on both sides."""
    error: str | None = None
    """Why the diff could not be computed (the other fields are then empty)."""
    notes: tuple[str, ...] = field(default_factory=tuple)
    """Context for the reader, e.g. that the stack does not exist at the base."""

    def counts(self) -> dict[str, int]:
        """Resources per operation, plus unchanged ones."""
        found = {op: sum(1 for c in self.changes if c.op == op) for op in ("create", "update", "delete")}
        return {**found, "same": self.unchanged}

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"stack": self.stack, "base": self.base, "summary": self.counts(), "error": self.error,
                "notes": list(self.notes), "changes": [c.to_dict() for c in self.changes]}


def format_path(parts: Sequence[str | int]) -> str:
    """A Pulumi property path: identifiers joined by dots, other keys as `["key"]`, indexes as `[0]`."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _IDENTIFIER.match(part):
            out += f".{part}" if out else part
        else:
            out += f"[{json.dumps(part)}]"
    return out


def _json_container(value: Any) -> Any:
    # Policy documents and kubeconfigs travel as JSON strings; diff them as structures.
    if isinstance(value, str) and value[:1] in ("{", "["):
        try:
            parsed = json.loads(value)
        except ValueError:
            return None
        return parsed if isinstance(parsed, (dict, list)) else None
    return None


def property_changes(old: Any, new: Any, parts: tuple[str | int, ...] = ()) -> Iterator[PropertyChange]:
    """Every leaf difference between two input values, with its property path."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(old.keys() | new.keys()):
            yield from property_changes(old.get(key, MISSING), new.get(key, MISSING), (*parts, key))
    elif isinstance(old, list) and isinstance(new, list):
        for i in range(max(len(old), len(new))):
            yield from property_changes(old[i] if i < len(old) else MISSING, new[i] if i < len(new) else MISSING,
                                        (*parts, i))
    elif (parsed_old := _json_container(old)) is not None and (parsed_new := _json_container(new)) is not None:
        yield from property_changes(parsed_old, parsed_new, parts)
    elif type(old) is not type(new) or old != new:
        yield PropertyChange(format_path(parts), old, new)


def _resource_changes(old: Resource, new: Resource) -> tuple[PropertyChange, ...]:
    changes = list(property_changes(old.inputs, new.inputs))
    if old.provider != new.provider:
        changes.append(PropertyChange("(provider)", old.provider, new.provider))
    return tuple(changes)


def diff_graphs(old: Graph | None, new: Graph | None, *, stack: str, base: str) -> StackDiff:
    """Compare two renders of a stack by URN (None: the stack does not exist on that side)."""
    before = {r.urn: r for r in (old.resources if old else [])}
    after = {r.urn: r for r in (new.resources if new else [])}
    changes: list[ResourceChange] = []
    unchanged = 0
    for urn in sorted(before.keys() | after.keys()):
        if urn not in before:
            changes.append(ResourceChange("create", urn, after[urn].type, after[urn].name))
        elif urn not in after:
            changes.append(ResourceChange("delete", urn, before[urn].type, before[urn].name))
        elif property_diff := _resource_changes(before[urn], after[urn]):
            changes.append(ResourceChange("update", urn, after[urn].type, after[urn].name, property_diff))
        else:
            unchanged += 1
    notes = (f"stack {stack} does not exist at {base}",) if old is None and new is not None else ()
    return StackDiff(stack=stack, base=base, changes=tuple(changes), unchanged=unchanged, notes=notes)



def diff_stacks(current: Mapping[str, Graph], base: str, job: BaseRenderJob | DiffError,
                read: Collection[Path]) -> dict[str, StackDiff]:
    """Diff each rendered stack against its render at `base` (from `start`), or report why it cannot be.

    `read` is what the working renders read (`reads.recording`): when none of it changed, the base is the same render.
    """
    if isinstance(job, DiffError):
        return {stack: StackDiff(stack=stack, base=base, error=str(job)) for stack in current}
    try:
        rendered = job.collect(current, read)
    except DiffError as exc:
        return {stack: StackDiff(stack=stack, base=base, error=str(exc)) for stack in current}
    diffs = {}
    for stack, graph in current.items():
        found = rendered.get(stack, BaseRender(None))
        if found.error:
            diffs[stack] = StackDiff(stack=stack, base=base, error=f"the stack does not render at {base}: {found.error}")
        else:
            diffs[stack] = diff_graphs(found.graph, graph, stack=stack, base=base)
    return diffs


def _shown(value: Any) -> str:
    if value is MISSING:
        return "(absent)"
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 1] + "…"


_SIGN: Final = {"create": ("+", "green"), "update": ("~", "yellow"), "delete": ("-", "red")}


def change_lines(diff: StackDiff, *, urns: bool = True) -> list[tuple[str, str]]:
    """(style, line) for each change: `~ type name  urn` then indented `path: old → new` lines."""
    lines: list[tuple[str, str]] = []
    for change in diff.changes:
        sign, style = _SIGN[change.op]
        lines.append((style, f"{sign} {change.type} {change.name}" + (f"  {change.urn}" if urns else "")))
        for prop in change.changes:
            lines.append(("", f"    {prop.path}: {_shown(prop.old)} → {_shown(prop.new)}"))
    return lines


def summary_line(diff: StackDiff) -> str:
    """`1 to update, 0 to create, 0 to delete, 127 unchanged`."""
    found = diff.counts()
    return (f"{found['update']} to update, {found['create']} to create, {found['delete']} to delete, "
            f"{found['same']} unchanged")


def to_text(diff: StackDiff) -> Group:
    """Terminal output of one stack's diff."""
    head = Text.assemble(("diff ", "bold"), (diff.stack, "bold"), f": working tree vs {diff.base}")
    if diff.error:
        return Group(head, Text(f"  diff unavailable: {diff.error}", style="red"))
    body = [Text(line, style=style) for style, line in change_lines(diff)]
    notes = [Text(f"  note: {note}", style="dim") for note in diff.notes]
    return Group(head, *notes, *body, Text(summary_line(diff), style="bold"))


def to_markdown(diff: StackDiff) -> str:
    """A ```diff block of the changes (or the error), for PR comments."""
    if diff.error:
        return f"diff unavailable: {diff.error}"
    if not diff.changes:
        return f"no changes against `{diff.base}` ({summary_line(diff)})"
    body = "\n".join(line for _, line in change_lines(diff, urns=False))
    return f"```diff\n{body}\n```\n{summary_line(diff)}"
