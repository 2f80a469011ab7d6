"""Benchmark: offline render of every stack (target < 10 s for all four on a 2-core machine)."""

import subprocess
import sys
import time

from infra.review.engine import list_stacks, render


def test_bench_render_all_stacks() -> None:
    # Cold: a fresh process, as `modelplane render` runs in CI (imports of the provider SDKs included).
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "from infra.review.engine import list_stacks, render\n"
                    "[render(s) for s in list_stacks()]"], check=True)
    cold = time.perf_counter() - started
    # Warm: the SDKs already imported, as in the test suite.
    render("dev")
    started = time.perf_counter()
    resources = sum(len(render(stack).resources) for stack in list_stacks())
    warm = time.perf_counter() - started
    print(f"\nrender all {len(list_stacks())} stacks: cold process {cold:.2f}s, warm {warm:.2f}s, "
          f"{resources} resources, {resources / warm:.0f} resources/s warm")
    assert resources > 0
