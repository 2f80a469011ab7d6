"""Pulumi-style diffs between two offline renders of a stack: the working tree against a git ref.

The base side is rendered by the code *at that ref* (`infra.review.baseline`). Both
sides are `Graph`s, compared by URN: `+` create, `-` delete, `~` update with each changed
property path (`spec.limits["nvidia.com/gpu"]`) and old → new, `+-` replace when a changed
property forces one (`infra.review.replacements`, from the providers' schemas). Transitions the
cloud rejects (an EKS downgrade) are errors. Changes are grouped by component and named by
short type and logical name. Secrets are masked in the graph; the renderer's mock values are
shown as `(known after deploy)`.
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
from infra.review.cascade import NEW_IDENTITY, identities, references
from infra.review.graph import Graph, Resource
from infra.review.replacements import forces_replacement, is_placeholder, rejected

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


Op = Literal["create", "update", "replace", "delete"]


@dataclass(frozen=True)
class ResourceChange:
    """A resource created, deleted or updated between the base and the working tree."""

    op: Op
    """create, update, replace or delete."""
    urn: str
    """The resource URN."""
    type: str
    """The type token."""
    name: str
    """The logical name."""
    changes: tuple[PropertyChange, ...] = ()
    """Changed properties (updates and replaces)."""
    component: str = ""
    """The logical name of the modelplane component the resource belongs to ('' for top-level resources)."""
    replace_because: tuple[str, ...] = ()
    """`path (provider source)` for each changed property that forces the replacement."""
    errors: tuple[str, ...] = ()
    """Why the cloud rejects this change (an EKS downgrade, …); the deploy would fail."""

    @property
    def short_type(self) -> str:
        """The type's last segment: `Subnet` for `aws:ec2/subnet:Subnet`."""
        return self.type.rsplit(":", 1)[-1]

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        out: dict[str, Any] = {"op": self.op, "urn": self.urn, "type": self.type, "name": self.name,
                               "component": self.component}
        if self.op in ("update", "replace"):
            out["changes"] = [c.to_dict() for c in self.changes]
        if self.replace_because:
            out["replaceBecause"] = list(self.replace_because)
        if self.errors:
            out["errors"] = list(self.errors)
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
        found = {op: sum(1 for c in self.changes if c.op == op) for op in ("create", "update", "replace", "delete")}
        return {**found, "same": self.unchanged}

    @property
    def rejected(self) -> list[str]:
        """Every rejected transition, as `Type name: reason`."""
        return [f"{c.short_type} {c.name}: {e}" for c in self.changes for e in c.errors]

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"stack": self.stack, "base": self.base, "summary": self.counts(), "error": self.error,
                "rejected": self.rejected, "notes": list(self.notes), "changes": [c.to_dict() for c in self.changes]}


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


def _component(urn: str, resources: Mapping[str, Resource]) -> str:
    # The outermost modelplane component above a resource: what a reviewer recognises ("network", "gpu").
    found, seen = "", set()
    while urn in resources and urn not in seen:
        seen.add(urn)
        if resources[urn].type.startswith("modelplane:"):
            found = resources[urn].name
        urn = resources[urn].parent
    return found


def _changed(old: Resource, new: Resource, property_diff: tuple[PropertyChange, ...],
             component: str) -> ResourceChange:
    because = tuple(f"{c.path} ({source})" for c in property_diff
                    if (source := forces_replacement(new.type, c.path, c.old, c.new)) is not None)
    return ResourceChange("replace" if because else "update", new.urn, new.type, new.name, property_diff,
                          component=component, replace_because=because,
                          errors=tuple(rejected(new.type, old.inputs, new.inputs)))


def diff_graphs(old: Graph | None, new: Graph | None, *, stack: str, base: str) -> StackDiff:
    """Compare two renders of a stack by URN (None: the stack does not exist on that side)."""
    before = {r.urn: r for r in (old.resources if old else [])}
    after = {r.urn: r for r in (new.resources if new else [])}
    every = {**before, **after}
    changes: list[ResourceChange] = []
    unchanged = 0
    for urn in sorted(before.keys() | after.keys()):
        component = _component(every[urn].parent, every)
        if urn not in before:
            changes.append(ResourceChange("create", urn, after[urn].type, after[urn].name, component=component))
        elif urn not in after:
            changes.append(ResourceChange("delete", urn, before[urn].type, before[urn].name, component=component))
        elif property_diff := _resource_changes(before[urn], after[urn]):
            changes.append(_changed(before[urn], after[urn], property_diff, component))
        else:
            unchanged += 1
    changes, unchanged = _cascade(changes, unchanged, before, after)
    notes = (f"stack {stack} does not exist at {base}",) if old is None and new is not None else ()
    return StackDiff(stack=stack, base=base, changes=tuple(changes), unchanged=unchanged, notes=notes)


def _cascade(changes: list[ResourceChange], unchanged: int, before: Mapping[str, Resource],
             after: Mapping[str, Resource]) -> tuple[list[ResourceChange], int]:
    """Carry each replacement to the resources that reference the replaced one's id or ARN (`infra.review.cascade`):
    their reference changes at deploy time, which replaces them where that property forces it, and so on."""
    by_urn = {c.urn: c for c in changes}
    pending = [c.urn for c in changes if c.op == "replace"]
    while pending:
        replaced = after[pending.pop()]
        patterns = identities(replaced)
        for urn, dependent in after.items():
            if urn == replaced.urn or urn not in before:
                continue
            found = references(dependent, patterns)
            current = by_urn.get(urn)
            known = {p.path for p in current.changes} if current else set()
            added = tuple(PropertyChange(path, value, NEW_IDENTITY) for parts, value in found
                          if (path := format_path(parts)) not in known)
            if not added:
                continue
            what = f"{replaced.type.rsplit(':', 1)[-1]} {replaced.name}"
            because = tuple(f"{c.path} (references {what}, replaced; {source})" for c in added
                            if (source := forces_replacement(dependent.type, c.path)) is not None)
            if current is None:
                unchanged -= 1
                current = ResourceChange("update", urn, dependent.type, dependent.name,
                                         component=_component(dependent.parent, after))
            op: Op = "replace" if because or current.op == "replace" else current.op
            updated = ResourceChange(op, urn, current.type, current.name, current.changes + added,
                                     component=current.component, replace_because=current.replace_because + because,
                                     errors=current.errors)
            if op == "replace" and current.op != "replace":
                pending.append(urn)
            by_urn[urn] = updated
    return [by_urn[urn] for urn in sorted(by_urn)], unchanged


def collect_base(current: Mapping[str, Graph], job: BaseRenderJob | DiffError,
                 read: Collection[Path]) -> Mapping[str, BaseRender]:
    """The base renders of the stacks in `current` (see `diff_stacks`); raises DiffError when there are none."""
    if isinstance(job, DiffError):
        raise job
    return job.collect(current, read)


def diff_stacks(current: Mapping[str, Graph], base: str, job: BaseRenderJob | DiffError,
                read: Collection[Path]) -> dict[str, StackDiff]:
    """Diff each rendered stack against its render at `base` (from `start`), or report why it cannot be.

    `read` is what the working renders read (`reads.recording`): when none of it changed, the base is the same render.
    """
    try:
        rendered = collect_base(current, job, read)
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
    if is_placeholder(value):
        return "(known after deploy)"
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 1] + "…"


_SIGN: Final = {"create": ("+", "green"), "update": ("~", "yellow"), "replace": ("+-", "magenta"),
                 "delete": ("-", "red")}
_REPLACE_ORDER: Final = "replace: create the new one, repoint dependents, then delete the old one"


def change_lines(diff: StackDiff) -> list[tuple[str, str]]:
    """(style, line) per change, grouped by component: `~ Type name`, then `path: old → new` lines.

    A replacement says which property forces it and the order Pulumi runs it in (create before delete,
    its default); a rejected transition is an `error:` line.
    """
    lines: list[tuple[str, str]] = []
    components = sorted({c.component for c in diff.changes})
    for component in components:
        lines.append(("bold", f"{component or '(stack)'}:"))
        for change in (c for c in diff.changes if c.component == component):
            sign, style = _SIGN[change.op]
            lines.append((style, f"  {sign} {change.short_type} {change.name}"))
            for prop in change.changes:
                mark = " (forces replacement)" if any(b.startswith(f"{prop.path} (") for b in change.replace_because) else ""
                lines.append(("", f"      {prop.path}: {_shown(prop.old)} → {_shown(prop.new)}{mark}"))
            if change.op == "replace":
                lines.append(("dim", f"      {_REPLACE_ORDER}"))
            lines += [("bold red", f"      error: {error}") for error in change.errors]
    return lines


def summary_line(diff: StackDiff) -> str:
    """`1 to update, 1 to replace, 0 to create, 0 to delete, 127 unchanged` (and rejected changes, if any)."""
    found = diff.counts()
    line = (f"{found['update']} to update, {found['replace']} to replace, {found['create']} to create, "
            f"{found['delete']} to delete, {found['same']} unchanged")
    return line + (f", {len(diff.rejected)} rejected by the cloud" if diff.rejected else "")


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
    # GitHub colours a ```diff line by its first character: signs go first, the component shows as a context line.
    body = "\n".join(line.lstrip() if line.lstrip()[:1] in ("+", "-") else line for _, line in change_lines(diff))
    return f"```diff\n{body}\n```\n{summary_line(diff)}"
