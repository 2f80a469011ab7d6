"""One line of a cost estimate, the assumptions it rests on, and the helpers every pricer formats lines with."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from infra.review.cost.prices import PriceTable
from infra.review.graph import Resource


@dataclass(frozen=True)
class Assumptions:
    """The usage assumptions of one estimate."""

    spot_discount: float
    """Fraction off On-Demand for spot capacity."""
    s3_gb_per_bucket: float
    """Stored GB per bucket."""
    nat_gb_per_month: float
    """GB processed per NAT gateway per month."""

    @classmethod
    def defaults(cls, prices: PriceTable, **overrides: float | None) -> Assumptions:
        """The price table's defaults, with any non-None override."""
        values = prices.defaults.model_dump()
        values.update({key: value for key, value in overrides.items() if value is not None})
        return cls(**values)


@dataclass(frozen=True)
class CostLine:
    """The estimate for one resource."""

    urn: str
    """The resource URN."""
    type: str
    """The type token."""
    name: str
    """The logical name."""
    monthly_min: float | None
    """Lowest monthly cost; None when it cannot be priced."""
    monthly_max: float | None
    """Highest monthly cost; None when unbounded or unpriced."""
    basis: str
    """How the figure was derived (instance type × count, hourly rate, assumption)."""
    unknown: tuple[str, ...] = ()
    """Instance or node types missing from the price table."""
    unbounded: bool = False
    """True when nothing caps the resource's size (a NodePool without limits)."""
    extra: Mapping[str, Any] = field(default_factory=dict)
    """Details for machines (node counts, the on-demand fallback ceiling)."""

    @property
    def is_range(self) -> bool:
        """True when min and max differ (scaling resources)."""
        return self.monthly_min != self.monthly_max

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"urn": self.urn, "type": self.type, "name": self.name,
                "monthly": {"min": rounded(self.monthly_min), "max": rounded(self.monthly_max)},
                "range": self.is_range, "basis": self.basis, "unknown": list(self.unknown),
                "unbounded": self.unbounded, **dict(self.extra)}


def rounded(value: float | None) -> float | None:
    """Cents, for JSON; None stays None."""
    return None if value is None else round(value, 2)


Pricer = Callable[[Resource, PriceTable, Assumptions], CostLine | None]
"""Prices one resource of the graph, or answers None when it has no fixed monthly price."""


def usd(rate: float) -> str:
    """A rate as `$0.10`, `$0.0832`, `$1.00`."""
    # $0.10, $0.0832, $1.00: at least cents, up to four decimals, no trailing zeros beyond cents.
    text = f"{rate:.4f}".rstrip("0")
    return f"${text}{'0' * max(0, 2 - len(text.partition('.')[2]))}"


def ranged(r: Resource, low: float | None, high: float | None, basis: str, **kwargs: Any) -> CostLine:
    """The line of resource `r` from `low` to `high` a month."""
    return CostLine(urn=r.urn, type=r.type, name=r.name, monthly_min=low, monthly_max=high, basis=basis, **kwargs)


def fixed(r: Resource, monthly: float, basis: str) -> CostLine:
    """The line of a resource whose monthly cost does not scale."""
    return ranged(r, monthly, monthly, basis)
