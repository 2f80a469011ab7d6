"""Benchmark our engine against vLLM on the same export, on CPU (not part of `make test`; run with `pytest -s`).

The model is the session's `vllm` fixture export: a randomly initialised `mini` preset (4 layers, 128 wide, 32-wide
heads) written by our trainer's `save_export`. Random weights are fine here: the cost per token does not depend on
what the weights say, and both engines are forced to generate exactly the requested number of tokens.

- our engine: `python -m workloads.serve` on that folder (request-level batching, max batch 32, one torch thread);
- vLLM 0.31.0 CPU build, `--enforce-eager` (the session fixture: continuous batching, paged attention). On x86 its
  automatic OpenMP binding reserves one core per worker for the scheduler process and pins the worker's compute
  to the rest (vllm/utils/ompmultiprocessing.py): one compute thread here, like ours;
- concurrency 1, 8 and 32; each request asks for a seeded mix of 8 to 128 output tokens (the same mix for both);
- vLLM gets `ignore_eos` (its sampling extension, vllm/entrypoints/openai/completion/protocol.py) so EOS cannot end a
  request early; our server accepts no such field (unknown fields are 400), so every response's
  `usage.completion_tokens` is checked to equal `max_tokens` on both engines;
- the official `openai` async client, one per engine; the engines alternate (ours, vLLM, then vLLM, ours, ...) in
  ROUNDS rounds per concurrency, each round one seeded mix for both, so drift on the shared 2 cores hits both alike;
  requests/s, output tokens/s, p50/p99 latency.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.support.servers import free_port
from tests.support.vllm import VllmServer
from workloads.demo.devservers import REPO, stop_process, wait_http_ok

CONCURRENCY = (1, 8, 32)
REQUESTS = {1: 16, 8: 48, 32: 128}
"""Requests per engine per round at each concurrency: with ROUNDS, a stable p50 in about two minutes in all."""
ROUNDS = 4
"""Rounds per concurrency; the engine that goes first alternates (ours, vLLM, vLLM, ours, ...)."""
MIN_TOKENS, MAX_TOKENS = 8, 128
"""The range of output lengths in the mix."""
SEED = 14
TORCH_THREADS = 1
"""Our server's compute threads: two on this shared 2-core machine ran ~30x slower per token (measured: 19.6 against
0.6 ms per token at concurrency 1), the intra-op pool's threads waiting on each other while the cores were busy."""
EXTRA: dict[str, dict[str, Any]] = {"ours": {}, "vllm": {"ignore_eos": True}}
"""Extra request fields per engine."""


def workload(count: int, rng: random.Random) -> list[tuple[str, int]]:
    """`count` (distinct prompt, output length) pairs; distinct prompts so no request reuses another's prefix cache."""
    return [(f"Request {i}-{rng.randrange(10**6)}: the quick brown fox", rng.randint(MIN_TOKENS, MAX_TOKENS))
            for i in range(count)]


@contextlib.contextmanager
def our_server(model_dir: Path, model: str, log: Path) -> Iterator[str]:
    """`python -m workloads.serve` on the export folder until the block ends; yields its base URL."""
    port = free_port()
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "workloads.serve", "--model-uri", str(model_dir),
                                 "--model-name", model, "--host", "127.0.0.1", "--port", str(port),
                                 "--max-batch-size", "32", "--torch-threads", str(TORCH_THREADS), "--log-level", "warning"],
                                cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http_ok(f"{base}/v2/health/ready", proc, 120, log)
        yield base
    finally:
        stop_process(proc, timeout=30)


async def load(base: str, model: str, extra: dict[str, Any], concurrency: int,
               requests: list[tuple[str, int]]) -> tuple[float, list[float], int]:
    """Send `requests` with at most `concurrency` in flight; returns (elapsed s, latencies s, output tokens)."""
    client = openai.AsyncOpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0, timeout=600)
    queue = list(reversed(requests))
    latencies: list[float] = []
    tokens = 0

    async def worker() -> None:
        nonlocal tokens
        while queue:
            prompt, length = queue.pop()
            began = time.perf_counter()
            answer = await client.completions.create(model=model, prompt=prompt, max_tokens=length, temperature=0,
                                                     extra_body=extra)
            latencies.append(time.perf_counter() - began)
            assert answer.usage is not None and answer.usage.completion_tokens == length, (base, length, answer.usage)
            tokens += length

    async with client:
        await client.completions.create(model=model, prompt="warm up", max_tokens=4, extra_body=extra)
        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - began, latencies, tokens


def _summary(runs: list[tuple[float, list[float], int]]) -> dict[str, float]:
    elapsed = sum(r[0] for r in runs)
    latencies = sorted(x for r in runs for x in r[1])
    return {"requests": len(latencies), "rps": len(latencies) / elapsed, "tokens_per_s": sum(r[2] for r in runs) / elapsed,
            "p50_ms": 1000 * statistics.median(latencies),
            "p99_ms": 1000 * latencies[min(len(latencies) - 1, round(0.99 * (len(latencies) - 1)))]}


@pytest.mark.timeout(900)
def test_bench_our_engine_vs_vllm(vllm: VllmServer, tmp_path: Path) -> None:
    rng = random.Random(SEED)
    rows: dict[tuple[str, int], dict[str, float]] = {}
    with our_server(vllm.model_dir, vllm.model, tmp_path / "serve.log") as ours:
        bases = {"ours": ours, "vllm": vllm.base_url}
        for concurrency in CONCURRENCY:
            runs: dict[str, list[tuple[float, list[float], int]]] = {"ours": [], "vllm": []}
            for round_ in range(ROUNDS):
                order = ("ours", "vllm") if round_ % 2 == 0 else ("vllm", "ours")
                mix = workload(REQUESTS[concurrency], rng)  # the same mix for both engines in a round
                for engine in order:
                    runs[engine].append(asyncio.run(load(bases[engine], vllm.model, EXTRA[engine], concurrency, mix)))
            for engine, engine_runs in runs.items():
                rows[engine, concurrency] = _summary(engine_runs)
    print(f"\nour engine vs vLLM (CPU, --enforce-eager), random-init `mini` export, {MIN_TOKENS}-{MAX_TOKENS} output "
          f"tokens per request (seeded mix), official openai async client:")
    print("  engine  conc  requests   req/s   out tok/s   p50 ms    p99 ms")
    for (engine, concurrency), row in rows.items():
        print(f"  {engine:>6} {concurrency:>5} {row['requests']:>9.0f} {row['rps']:>7.2f} {row['tokens_per_s']:>11.0f} "
              f"{row['p50_ms']:>8.0f} {row['p99_ms']:>9.0f}")
    print(json.dumps({"llm_engines": {f"{e}@{c}": r for (e, c), r in rows.items()}}))
    assert all(row["rps"] > 0 for row in rows.values())
