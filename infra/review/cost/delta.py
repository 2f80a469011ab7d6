"""Before/after cost: the monthly delta per resource and in total between a git ref's render and the working tree.

`modelplane cost --base REF` prices both renders with the same price table and assumptions, so
every difference comes from the change under review (what Infracost shows on a pull request).
Ranges are compared end to end: the minimum against the minimum, the maximum against the maximum.
A resource that the price table cannot price on either side (an instance type it lacks) has no figure, so neither
has the total: it reads `unpriced`, naming the types, never a change computed as if that resource cost nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.table import Table

from infra.review.cost.estimate import CostReport, money
from infra.review.cost.lines import CostLine, rounded


@dataclass(frozen=True)
class LineDelta:
    """How one resource's monthly cost moves."""

    urn: str
    """The resource URN."""
    label: str
    """Short type and logical name, e.g. `NodePool gpu-train`."""
    before: tuple[float | None, float | None] | None
    """(min, max) at the base; None when the resource is new."""
    after: tuple[float | None, float | None] | None
    """(min, max) in the working tree; None when the resource is removed."""
    unpriced: tuple[str, ...] = ()
    """Types the price table lacks where a side has no figure: the change is unknown, not unbounded."""

    def delta(self) -> tuple[float | None, float | None]:
        """(min, max) change per month; a None side means unbounded (or unpriced) on either end."""
        old, new = self.before or (0.0, 0.0), self.after or (0.0, 0.0)
        return _minus(new[0], old[0]), _minus(new[1], old[1])

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        low, high = self.delta()

        def pair(found: tuple[float | None, float | None] | None) -> dict[str, float | None] | None:
            return None if found is None else {"min": rounded(found[0]), "max": rounded(found[1])}

        return {"urn": self.urn, "resource": self.label, "before": pair(self.before), "after": pair(self.after),
                "delta": {"min": rounded(low), "max": rounded(high)}, "unpriced": list(self.unpriced)}


@dataclass(frozen=True)
class CostDelta:
    """A stack's monthly cost at the base and now, and the resources whose cost changed."""

    stack: str
    """The stack name."""
    base: str
    """The git ref compared against."""
    before: CostReport | None
    """The base estimate; None when the stack does not exist at the base."""
    after: CostReport
    """The working tree's estimate."""
    lines: tuple[LineDelta, ...]
    """Only resources whose cost changed, largest increase first."""

    @property
    def unpriced(self) -> list[str]:
        """Types the price table lacks among the changed resources: the total change is then unknown."""
        return sorted({kind for line in self.lines for kind in line.unpriced})

    def total(self) -> tuple[float | None, float | None]:
        """(min, max) change of the stack's monthly total; (None, None) when a changed resource is unpriced."""
        if self.unpriced:
            return None, None
        old = (self.before.total_min, self.before.total_max) if self.before else (0.0, 0.0)
        new = (self.after.total_min, self.after.total_max)
        return (new[0] - old[0], None if new[1] is None or old[1] is None else new[1] - old[1])

    def to_dict(self) -> dict[str, Any]:
        """The JSON document of `modelplane cost --base REF --json`."""
        low, high = self.total()
        return {"stack": self.stack, "base": self.base, "currency": self.after.prices.currency,
                "before": self.before.to_dict()["total"] if self.before else None,
                "after": self.after.to_dict()["total"], "delta": {"min": rounded(low), "max": rounded(high)},
                "unpriced": self.unpriced, "lines": [line.to_dict() for line in self.lines]}


def _minus(new: float | None, old: float | None) -> float | None:
    return None if new is None or old is None else new - old


def _or_inf(value: float | None) -> float:
    # An unbounded change sorts first: it is the one a reviewer must look at.
    return float("inf") if value is None else value


def _span(line: CostLine) -> tuple[float | None, float | None]:
    return (line.monthly_min, None if line.unbounded else line.monthly_max)


def _unpriced(*lines: CostLine | None) -> tuple[str, ...]:
    # A line without a figure that is not unbounded is one the table cannot price (estimate.py's `unknown`).
    return tuple(sorted({kind for line in lines if line is not None and line.monthly_max is None
                         and not line.unbounded for kind in line.unknown or ("(unpriced)",)}))


def cost_delta(before: CostReport | None, after: CostReport, *, base: str) -> CostDelta:
    """Compare two estimates of a stack by URN."""
    old = {line.urn: line for line in (before.lines if before else ())}
    new = {line.urn: line for line in after.lines}
    found = []
    for urn in old.keys() | new.keys():
        line = new.get(urn) or old[urn]
        entry = LineDelta(urn, f"{line.type.rsplit(':', 1)[-1]} {line.name}",
                          _span(old[urn]) if urn in old else None, _span(new[urn]) if urn in new else None,
                          unpriced=_unpriced(old.get(urn), new.get(urn)))
        if entry.before != entry.after:
            found.append(entry)
    found.sort(key=lambda d: (-_or_inf(d.delta()[1]), d.label))
    return CostDelta(stack=after.stack, base=base, before=before, after=after, lines=tuple(found))


def signed(value: float | None) -> str:
    """`+$12.00`, `-$3.50`, `$0.00`, or `unbounded`."""
    if value is None:
        return "unbounded"
    return ("+" if value > 0.005 else "-" if value < -0.005 else "") + money(abs(value))


def signed_span(low: float | None, high: float | None, unpriced: list[str] | tuple[str, ...] = ()) -> str:
    """One signed figure when both ends move alike, else `low..high`; `unpriced (types)` when a side has no price."""
    if unpriced:
        return f"unpriced ({', '.join(unpriced)} not in the price table)"
    return signed(low) if low == high else f"{signed(low)}..{signed(high)}"


def _pair(found: tuple[float | None, float | None] | None, unpriced: tuple[str, ...] = ()) -> str:
    if found is None:
        return "—"
    if found[0] is None and found[1] is None and unpriced:
        return "unpriced"
    return money(found[1]) if found[0] == found[1] else f"{money(found[0])}..{money(found[1])}"


def to_table(delta: CostDelta) -> Table:
    """Terminal table: each changed resource before, after and delta, then the total."""
    table = Table(title=f"cost {delta.stack}: monthly change against {delta.base}", title_justify="left")
    for column in ("resource", "before", "after", "delta"):
        table.add_column(column, justify="left" if column == "resource" else "right")
    for line in delta.lines:
        table.add_row(line.label, _pair(line.before, line.unpriced), _pair(line.after, line.unpriced),
                      signed_span(*line.delta(), line.unpriced))
    table.add_section()
    before = (delta.before.total_min, delta.before.total_max) if delta.before else None
    table.add_row("total", _pair(before), _pair((delta.after.total_min, delta.after.total_max)),
                  signed_span(*delta.total(), delta.unpriced), style="bold")
    return table


def to_markdown(delta: CostDelta) -> str:
    """A PR comment section: the total delta, then a table of the resources that changed."""
    rows = [f"**{signed_span(*delta.total(), delta.unpriced)}** per month against `{delta.base}`"]
    if delta.lines:
        rows += ["", "| resource | before | after | delta |", "|---|---|---|---|"]
        rows += [f"| `{line.label}` | {_pair(line.before, line.unpriced)} | {_pair(line.after, line.unpriced)} | "
                 f"{signed_span(*line.delta(), line.unpriced)} |" for line in delta.lines]
    return "\n".join(rows)
