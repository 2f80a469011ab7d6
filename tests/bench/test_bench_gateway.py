"""Benchmark the caching gateway in front of a real vLLM (CPU) (not part of `make test`; run with `pytest -s`).

- overhead: p50 latency through the gateway minus p50 of the same request sent to vLLM directly, requests
  interleaved (direct, gateway, direct, ...) so drift hits both alike; sampled requests (not cacheable) and
  greedy ones with distinct prompts (a cache miss: one Redis GET and SET); target < 2 ms;
- cache-hit p50 through the gateway (one greedy request repeated); target < 5 ms.

The gateway is its own `python -m workloads.gateway` process, so the load generator (this process, aiohttp on one
keep-alive connection per target) does not share its GIL.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp

from tests.support.dockerfile import REPO_ROOT
from tests.support.servers import free_port, redis_server, wait_for_port
from tests.support.vllm import VllmServer
from tests.workloads.gateway.support import scrape
from workloads.common.metrics import GATEWAY_CACHE_ERRORS_TOTAL
from workloads.demo.devservers import stop_process
from workloads.gateway.handlers import CACHE_HEADER
from workloads.gateway.settings import env_name

PAIRS = 300
"""Interleaved direct/gateway request pairs per overhead row."""
HITS = 300
"""Repeats of the cached request."""
KEY = "sk-bench"


@contextlib.contextmanager
def gateway_process(upstream: str, redis_url: str, log: Path) -> Iterator[str]:
    """`python -m workloads.gateway` with the cache on and no rate limit; yields its base URL."""
    port = free_port()
    env = {**os.environ, env_name("upstream"): upstream, env_name("redis_url"): redis_url,
           env_name("api_keys_env"): "BENCH_GATEWAY_KEYS", "BENCH_GATEWAY_KEYS": KEY, env_name("port"): str(port),
           env_name("host"): "127.0.0.1", env_name("rate_limit_rps"): "0", env_name("log_level"): "warning",
           # vLLM's CPU threads can starve Redis past the 100 ms timeout on 2 cores; a short backoff keeps one such
           # hiccup from switching the cache off for the hit run (errors are counted and printed).
           env_name("cache_backoff_s"): "1"}
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "workloads.gateway"], cwd=REPO_ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, proc=proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process(proc)


async def _post(session: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> tuple[float, str]:
    started = time.perf_counter()
    async with session.post(url, json=body, headers={"Authorization": f"Bearer {KEY}"}) as response:
        payload = await response.read()
        assert response.status == 200, payload
        return (time.perf_counter() - started) * 1000, response.headers.get(CACHE_HEADER, "")


def _ms(samples: list[float], q: float) -> float:
    return statistics.quantiles(samples, n=100)[int(q) - 1] if q < 100 else max(samples)


async def overhead(direct: str, gateway: str, model: str, greedy: bool) -> dict[str, float]:
    """p50 and p99 of each path and the p50 difference over PAIRS interleaved pairs."""
    times: dict[str, list[float]] = {"direct": [], "gateway": []}
    connector = aiohttp.TCPConnector(limit=2)
    async with aiohttp.ClientSession(connector=connector) as session:
        for i in range(PAIRS + 10):
            body = {"model": model, "prompt": f"bench {i}", "max_tokens": 1,
                    **({"temperature": 0} if greedy else {"temperature": 1.0})}
            direct_ms, _ = await _post(session, f"{direct}/v1/completions", body)
            gateway_ms, cache = await _post(session, f"{gateway}/v1/completions", body)
            assert cache == ("miss" if greedy else "")
            if i >= 10:  # the first requests warm connections and vLLM
                times["direct"].append(direct_ms)
                times["gateway"].append(gateway_ms)
    p50 = {path: statistics.median(samples) for path, samples in times.items()}
    return {"direct_p50_ms": p50["direct"], "gateway_p50_ms": p50["gateway"],
            "added_p50_ms": p50["gateway"] - p50["direct"],
            "direct_p99_ms": _ms(times["direct"], 99), "gateway_p99_ms": _ms(times["gateway"], 99)}


async def cache_hits(gateway: str, model: str) -> dict[str, float]:
    """p50 and p99 of HITS repeats of one greedy request, after the first (the upstream's) answer."""
    body = {"model": model, "prompt": "cached bench prompt", "max_tokens": 16, "temperature": 0}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as session:
        first_ms, cache = await _post(session, f"{gateway}/v1/completions", body)
        assert cache == "miss"
        await asyncio.sleep(0.2)  # the gateway stores the answer after sending it
        hits = []
        for _ in range(HITS):
            hit_ms, cache = await _post(session, f"{gateway}/v1/completions", body)
            assert cache == "hit"
            hits.append(hit_ms)
    return {"first_ms": first_ms, "hit_p50_ms": statistics.median(hits), "hit_p99_ms": _ms(hits, 99)}


def test_bench_gateway_overhead_and_cache_hits(vllm: VllmServer, tmp_path: Path) -> None:
    with redis_server(tmp_path) as redis, gateway_process(vllm.base_url, redis.url, tmp_path / "gateway.log") as url:
        sampled = asyncio.run(overhead(vllm.base_url, url, vllm.model, greedy=False))
        greedy = asyncio.run(overhead(vllm.base_url, url, vllm.model, greedy=True))
        time.sleep(1.1)
        hits = asyncio.run(cache_hits(url, vllm.model))
        cache_errors = scrape(f"{url}/metrics")[GATEWAY_CACHE_ERRORS_TOTAL]
    print(f"\ngateway over vLLM CPU ({vllm.model}, 1-token completions, {PAIRS} interleaved pairs):")
    print("  request              direct p50  gateway p50  added p50  direct p99  gateway p99  (ms)")
    for name, row in (("sampled (no cache)", sampled), ("greedy (cache miss)", greedy)):
        print(f"  {name:<20} {row['direct_p50_ms']:>10.2f} {row['gateway_p50_ms']:>12.2f} {row['added_p50_ms']:>10.2f} "
              f"{row['direct_p99_ms']:>11.2f} {row['gateway_p99_ms']:>12.2f}")
    print(f"  cache hit: p50 {hits['hit_p50_ms']:.2f} ms, p99 {hits['hit_p99_ms']:.2f} ms "
          f"(first answer, from vLLM: {hits['first_ms']:.1f} ms); Redis errors (failed open): {cache_errors:.0f}")
    print(json.dumps({"gateway": {"sampled": sampled, "greedy_miss": greedy, "cache_hit": hits,
                                  "cache_errors": cache_errors}}))
    assert hits["hit_p50_ms"] < sampled["direct_p50_ms"] + sampled["added_p50_ms"]
