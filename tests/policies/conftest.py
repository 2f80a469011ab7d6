"""The policy tests share the infra tests' memoised stack renders."""

from tests.infra.conftest import stack_graph

__all__ = ["stack_graph"]
