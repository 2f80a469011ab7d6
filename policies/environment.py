"""Which stack a rule is judging, and whether that stack counts as production.

Some rules hold only in production (versioned buckets, multi-AZ Redis, replicated inference)
and some only outside it (spot GPU pools in dev/staging). "Production" is decided, in order:

1. the rule's own `production` config property, when a policy config sets it (an override);
2. the stack's `modelplane:production` config: under `pulumi preview|up --policy-pack` the
   analyzer process is configured with the stack's config and name (pulumi/pulumi#3612,
   #20570), so `pulumi.Config("modelplane")` reads `stacks/Pulumi.<stack>.yaml`; offline,
   `modelplane policy` passes `PlatformConfig.production` through `stack_context`;
3. otherwise the stack's name is looked up in the rule's `productionStacks` list.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Final

import pulumi

DEFAULT_PRODUCTION_STACKS: Final = ("prod",)
"""Stack names treated as production when the stack config does not say."""

ENVIRONMENT_SCHEMA: Final[dict[str, dict[str, Any]]] = {
    "production": {
        "type": "boolean",
        "description": "Treat the stack as production. Defaults to the stack's modelplane:production config.",
    },
    "productionStacks": {
        "type": "array",
        "items": {"type": "string"},
        "default": list(DEFAULT_PRODUCTION_STACKS),
        "description": "Stack names treated as production when modelplane:production is not set.",
    },
}
"""Config properties shared by every environment-aware rule."""


@dataclass(frozen=True)
class StackContext:
    """The stack under evaluation."""

    stack: str
    """The stack name."""
    production: bool | None
    """The stack's `modelplane:production` config; None when the stack does not set it."""


_CURRENT: ContextVar[StackContext | None] = ContextVar("modelplane_policy_stack", default=None)


@contextmanager
def stack_context(context: StackContext) -> Iterator[None]:
    """Evaluate rules for this stack (the offline engine's replacement for the analyzer's runtime settings)."""
    token = _CURRENT.set(context)
    try:
        yield
    finally:
        _CURRENT.reset(token)


def current_stack() -> StackContext:
    """The stack being judged: the offline context when set, else the Pulumi analyzer's runtime settings."""
    context = _CURRENT.get()
    if context is not None:
        return context
    return StackContext(stack=pulumi.get_stack(), production=pulumi.Config("modelplane").get_bool("production"))


def is_production(config: Mapping[str, Any]) -> bool:
    """Whether the stack counts as production for a rule with this config (see the module docstring)."""
    if config.get("production") is not None:
        return bool(config["production"])
    context = current_stack()
    if context.production is not None:
        return context.production
    return context.stack in config.get("productionStacks", DEFAULT_PRODUCTION_STACKS)
