"""Benchmark: `modelplane preview` of every stack (render, policy, diff, cost); target < 20 s.

Two cases, each in a fresh process as CI runs it, in a scratch git repo of the working tree:
- against a ref whose program differs (a PR against main): the base is rendered in a git worktree;
- against HEAD on a clean tree (`make preview` on main): the working render is reused as the base.
"""

import json
import time
from pathlib import Path

import pytest

from tests.policies.helpers import gpu_limit_repo, modelplane

TARGET_SECONDS = 20.0


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The working tree in a scratch git repo whose last commit raises one GPU pool's limit."""
    return gpu_limit_repo(tmp_path_factory.mktemp("bench"))


def _timed(repo: Path, base: str) -> tuple[float, dict]:
    started = time.perf_counter()
    result = modelplane(repo, "preview", "--stack", "all", "--base", base, "--json")
    elapsed = time.perf_counter() - started
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return elapsed, json.loads(result.stdout)


def test_bench_preview_all_stacks(repo: Path) -> None:
    changed, doc = _timed(repo, "HEAD~1")
    clean, _ = _timed(repo, "HEAD")
    resources = sum(stack["resources"] for stack in doc["stacks"])
    updates = sum(stack["diff"]["summary"]["update"] for stack in doc["stacks"])
    print(f"\npreview all {len(doc['stacks'])} stacks ({resources} resources): "
          f"against a changed ref (base rendered in a worktree) {changed:.2f}s, "
          f"against HEAD on a clean tree (base reused) {clean:.2f}s; target < {TARGET_SECONDS:.0f}s")
    assert updates == 1
