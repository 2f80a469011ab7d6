"""Benchmark recommendation latency (issue 15; not part of `make test`; run with `pytest -s`).

A model trained on a synthetic log (1,000 users, 1,000 items, 50,000 events) served by `python -m
workloads.recommend.service` as its own process, reading every user's live features from a redis-server (written
beforehand, 10 recent items each), and `python -m workloads.gateway` in front of it as a second process. The load
generator (this process, aiohttp) keeps 8 requests in flight (concurrency 8) against one target at a time:
GET /v1/recommendations/{user}?k=10 for random users, first direct to the service, then through the gateway.
Printed: p50/p99 latency and requests/s per target; asserted: every answer is a 200 with 10 items from live features.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import redis as redis_py

from tests.support.dockerfile import REPO_ROOT
from tests.support.servers import RedisServer, free_port, wait_for_port
from workloads.demo.devservers import stop_process
from workloads.gateway.settings import env_name as gateway_env
from workloads.recommend.dataset import synthetic_log, write_log
from workloads.recommend.features import FeatureStore, PartitionBatch
from workloads.recommend.model_settings import ServiceSettings, TrainSettings
from workloads.recommend.train import run

USERS, ITEMS, CLUSTERS, EVENTS = 1_000, 1_000, 20, 50_000
"""The bench log's shape."""
CONCURRENCY = 8
"""Requests in flight (issue 15: recommendation latency at concurrency 8)."""
REQUESTS = 3_000
"""Requests per target (after WARMUP)."""
WARMUP = 200
"""Requests per target not counted (connections, first torch calls)."""
KEY = "sk-bench"


@contextlib.contextmanager
def process(module: str, env: dict[str, str], port: int, log: Path) -> Iterator[str]:
    """`python -m module` with `env` added; yields its base URL once it listens."""
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", module], cwd=REPO_ROOT, env={**os.environ, **env}, stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, proc=proc, timeout=120)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process(proc)


def _features(redis_url: str) -> None:
    """Ten recent items for every user, as the processor writes them."""
    store = FeatureStore(redis_py.Redis.from_url(redis_url), prefix="rec:", recent_items=50, ttl_s=3600,
                         half_life_s=3600)
    events = synthetic_log(USERS * 10, users=USERS, items=ITEMS, clusters=CLUSTERS, seed=7)
    store.apply([PartitionBatch(topic="events", partition=0, last_offset=len(events) - 1,
                                events=list(enumerate(events)))])


async def _load(base: str, headers: dict[str, str]) -> tuple[list[float], float]:
    """Latencies (ms) of REQUESTS GETs with CONCURRENCY in flight, and the requests/s."""
    rng = random.Random(0)
    users = [f"u{rng.randrange(USERS)}" for _ in range(WARMUP + REQUESTS)]
    latencies: list[float] = []
    queue: asyncio.Queue[tuple[int, str]] = asyncio.Queue()
    for n, user in enumerate(users):
        queue.put_nowait((n, user))

    async def worker(session: aiohttp.ClientSession) -> None:
        while not queue.empty():
            n, user = queue.get_nowait()
            started = time.perf_counter()
            async with session.get(f"{base}/v1/recommendations/{user}?k=10", headers=headers) as response:
                body = await response.json()
            assert response.status == 200 and len(body["items"]) == 10 and body["features"] == "live", body
            if n >= WARMUP:
                latencies.append((time.perf_counter() - started) * 1000)

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=CONCURRENCY)) as session:
        started = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(CONCURRENCY)))
        seconds = time.perf_counter() - started
    return latencies, len(users) / seconds


def _row(name: str, latencies: list[float], rate: float) -> str:
    cuts = statistics.quantiles(latencies, n=100)
    return f"| {name} | {cuts[49]:.2f} | {cuts[98]:.2f} | {rate:,.0f} |"


def test_bench_recommendation_latency_at_concurrency_8(redis: RedisServer, tmp_path: Path) -> None:
    log_dir, export = str(tmp_path / "log"), str(tmp_path / "export")
    write_log(synthetic_log(EVENTS, users=USERS, items=ITEMS, clusters=CLUSTERS, seed=0), log_dir, shard_events=50_000)
    started = time.monotonic()
    evaluation = run(TrainSettings(data=log_dir, export=export, epochs=10, dim=32))
    print(f"\ntrained in {time.monotonic() - started:.1f} s: {evaluation}")
    _features(redis.url)
    service_port, gateway_port = free_port(), free_port()
    service_env = {ServiceSettings.env_name("model_uri"): export, ServiceSettings.env_name("redis_url"): redis.url,
                   ServiceSettings.env_name("host"): "127.0.0.1", ServiceSettings.env_name("port"): str(service_port),
                   ServiceSettings.env_name("log_level"): "warning"}
    with process("workloads.recommend.service", service_env, service_port, tmp_path / "service.log") as service:
        gateway_env_vars = {gateway_env("upstream"): service, gateway_env("api_keys_env"): "BENCH_KEYS", "BENCH_KEYS": KEY,
                            gateway_env("host"): "127.0.0.1", gateway_env("port"): str(gateway_port),
                            gateway_env("rate_limit_rps"): "0", gateway_env("log_level"): "warning"}
        with process("workloads.gateway", gateway_env_vars, gateway_port, tmp_path / "gateway.log") as gateway:
            direct = asyncio.run(_load(service, {}))
            proxied = asyncio.run(_load(gateway, {"Authorization": f"Bearer {KEY}"}))
    print(f"\nrecommendation latency, concurrency {CONCURRENCY}, {REQUESTS} requests per row")
    print("| target | p50 ms | p99 ms | requests/s |\n|---|---|---|---|")
    print(_row("service direct", *direct))
    print(_row("through the gateway", *proxied))
    assert len(direct[0]) == len(proxied[0]) == REQUESTS
