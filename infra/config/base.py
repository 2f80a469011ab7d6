"""The base of every stack-config model, and the wording its messages share."""

import difflib
import re

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

POOL_NAME = r"^[a-z][a-z0-9-]{0,30}$"
"""Node pool names (nodePools, gpuPools, karpenter.cpuPool): lowercase letters, digits, dashes; 31 at most."""
CPU_QUANTITY = re.compile(r"^\d+(\.\d+)?m?$")
"""A Kubernetes CPU quantity: whole or fractional cores, or millicores (500m)."""
MEMORY_QUANTITY = re.compile(r"^\d+(Ki|Mi|Gi|Ti)$")
"""A Kubernetes memory quantity in binary units: Ki, Mi, Gi or Ti."""
UNIT_BYTES = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
"""Bytes per unit of MEMORY_QUANTITY."""


class Section(BaseModel):
    """Base of every config model: frozen, camelCase keys, unknown keys rejected."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        use_attribute_docstrings=True,
    )


def snake(camel: str) -> str:
    """A camelCase config key as the model's snake_case field name."""
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in camel)


def not_one_of(value: object, allowed: tuple[str, ...] | list[str]) -> str:
    """The message for a value outside a fixed set, with the closest match when there is one."""
    hint = difflib.get_close_matches(str(value), list(allowed), n=1)
    suggestion = f"; did you mean {hint[0]!r}?" if hint else ""
    return f"must be one of {', '.join(allowed)} (got {value!r}){suggestion}"


def cpu_cores(quantity: str) -> float:
    """Cores in a Kubernetes CPU quantity matching CPU_QUANTITY ("4" → 4.0, "1.5m" → 0.0015, "2500m" → 2.5)."""
    return float(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def cpu_problems(key: str, value: str, example: str) -> list[tuple[str, str]]:
    """The `(key, message)` problem for a value that is not a CPU quantity, or none."""
    if CPU_QUANTITY.match(value):
        return []
    return [(key, f"must be a Kubernetes CPU quantity like {example} or 500m (got {value!r})")]


def memory_bytes(memory: str) -> int:
    """Bytes of a memory quantity the config validated (digits and Ki, Mi, Gi or Ti)."""
    match = MEMORY_QUANTITY.match(memory)
    assert match, memory
    return int(memory[: -len(match.group(1))]) * UNIT_BYTES[match.group(1)]


def memory_problems(key: str, value: str, example: str) -> list[tuple[str, str]]:
    """The `(key, message)` problem for a value that is not a memory quantity (Ki, Mi, Gi, Ti), or none."""
    if MEMORY_QUANTITY.match(value):
        return []
    return [(key, f"must be a Kubernetes memory quantity like {example} (Ki, Mi, Gi or Ti) (got {value!r})")]
