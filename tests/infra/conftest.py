"""Rendered graphs of the real stacks, shared by the infra tests (each stack renders once)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pulumi
import pytest

from infra.review.engine import render
from infra.review.graph import Graph

_cache: dict[str, Graph] = {}


@pytest.fixture(scope="session")
def stack_graph() -> Callable[[str], Graph]:
    """Render a real stack (memoised for the session)."""

    def get(stack: str) -> Graph:
        if stack not in _cache:
            _cache[stack] = render(stack)
        return _cache[stack]

    return get


@pytest.fixture(scope="session")
def prod(stack_graph: Callable[[str], Graph]) -> Graph:
    """The prod stack's graph."""
    return stack_graph("prod")


@pytest.fixture(scope="session")
def dev(stack_graph: Callable[[str], Graph]) -> Graph:
    """The dev stack's graph."""
    return stack_graph("dev")


@pytest.fixture()
def mocked_runtime() -> Iterator[None]:
    """A bare mock engine for constructing one component directly (validation tests)."""
    from infra.review.engine import _RecordingMonitor, _RenderMocks, _reset_runtime

    mocks = _RenderMocks(region="us-east-1")
    _reset_runtime()
    pulumi.runtime.set_mocks(mocks, project="modelplane", stack="test", preview=False, monitor=_RecordingMonitor(mocks))
    yield
    _reset_runtime()
