"""The stack tests share the infra tests' memoised stack renders."""

from tests.infra.conftest import dev, prod, stack_graph

__all__ = ["dev", "prod", "stack_graph"]
