"""Soak: the inference server at ~80% of its measured capacity against a real Redis restarted twice (`make soak`).

Skipped unless `SOAK_DURATION_S` is set (so a bare `pytest` does not start a ten-minute run; `make soak` sets it to
600 unless given, e.g. `SOAK_DURATION_S=60 make soak` for a short smoke). `make test` also ignores tests/soak.

Why our server and not the caching gateway: both keep their response cache in Redis through the same class
(`workloads/serve/cache.py`'s `ResponseCache`, imported by `workloads/gateway/app.py`), so a Redis restart
exercises the same fail-open path in either. In the server, that cache sits in the process that also runs the
model, so its RSS covers the whole request path, and its capacity is our own engine's. Behind the gateway the
capacity would be vLLM's (its CPU build, started from `.venv-vllm`), whose threads on this 2-core machine starve
Redis past the cache's 100 ms timeout (docs/benchmarks.md, "Caching gateway over vLLM"): the soak would measure
vLLM and CPU contention, not our code.

The run, in one process tree:
1. a trained `tiny` export served by `python -m workloads.serve` as its own process (so its RSS is its own), with
   `--redis-url` pointing at a throwaway redis-server;
2. capacity: closed loop, CONCURRENCY clients with distinct prompts for CAPACITY_S. Distinct prompts are all
   misses, the path every request takes while Redis is down (the cache fails open), so 80% of that capacity
   stays sustainable during the outages;
3. a warm-up minute (WARMUP_S) at the soak's rate, so the RSS baseline is taken once allocator and caches settled;
4. the soak: open loop at LOAD_SHARE x capacity (request i due at i/rate whatever the others are doing; latency
   counted from its send, p99 from its due time reported beside it), a quarter of the requests from a small hot
   set of prompts (cache hits while Redis is up), the rest distinct (a GET miss and a SET); redis-server stopped
   at 1/3 and 2/3 of the run, down for REDIS_DOWN_S, then started again on the same port (empty: no persistence);
5. per minute of send time: requests, achieved send rate, statuses, lost, cache hits, p50/p99 of the 200s, RSS;
   written to soak.md/soak.json in the test's output folder and printed.

Asserted: the issue's targets (no 5xx, nor a 200 without a choice; no request lost; RSS growth < 10% from after the
warm-up to the end of the soak). So that a run without real outages cannot pass: the server counted Redis errors, and the
cache served hits again within one backoff window (+ RECOVERY_MARGIN_S) of Redis's return after each restart. So that
a starved load generator is not mistaken for the server (the run is then invalid, not passed): no request was sent
more than MAX_SEND_LAG_S after its due time, and every minute's achieved send rate is at least MIN_RATE_SHARE of the
target. At most MAX_429_SHARE of the requests may be shed (429, the server's queue full): more means the capacity
was mis-measured or other work took the cores, and the run shows the shedding rather than the soak.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.soak.load import (
    REQUEST_TIMEOUT_S,
    OpenLoopRun,
    bucket_rows,
    closed_loop,
    completion_body,
    cpu_s,
    make_client,
    open_loop,
    render_table,
    rss_kib,
)
from tests.support.servers import RedisServer, free_port, redis_server
from tests.workloads.serve.support import write_tiny_export
from workloads.common.metrics import INFERENCE_CACHE_ERRORS_TOTAL
from workloads.demo.devservers import log_tail, stop_process, wait_http_ok
from workloads.serve.cache import HIT
from workloads.serve.settings import ServeSettings

DURATION_ENV = "SOAK_DURATION_S"
"""Environment variable: seconds of the open-loop soak phase (the issue's ten minutes: 600); unset skips the soak."""
BUCKET_S = 60.0
"""Figures are reported per minute."""
FINE_BUCKET_S = 5.0
"""soak.json also holds 5 s rows, to place any failure against the restarts."""
WARMUP_S = 60.0
"""Seconds at the soak's rate before it, after which the RSS baseline is taken."""
CAPACITY_S = 20.0
"""Seconds of the closed-loop capacity measurement."""
CONCURRENCY = 32
"""Closed-loop clients: the server's batching saturates there (docs/benchmarks.md, "Inference server")."""
LOAD_SHARE = 0.8
"""The soak's rate as a share of the measured capacity."""
MAX_TOKENS = 64
"""Completion tokens per request."""
HOT_PROMPTS = 32
"""Prompts that repeat (cache hits while Redis is up); every HOT_EVERY-th request uses one."""
HOT_EVERY = 4
"""One request in this many is a hot one."""
MODEL = "lm"
"""The served model name (--model-name)."""
REDIS_DOWN_S = 5.0
"""How long redis-server stays stopped at each restart."""
DEFAULT_BACKOFF_S = 30.0
"""The server's --cache-backoff-s default; a run shorter than 12 of these uses duration/12, so the cache's retry
after the second restart still falls inside the run."""
RECOVERY_MARGIN_S = 10.0
"""Seconds allowed, past Redis's return and one backoff window, for the cache to serve hits again."""
MAX_SEND_LAG_S = 5.0
"""The most a request may be sent after its due time before the run no longer counts as open loop (on 2 shared cores
the generator stalls ~2.5 s once in a while; the per-minute rate, MIN_RATE_SHARE, is the main check)."""
MIN_RATE_SHARE = 0.95
"""Each minute's achieved send rate as a share of the target below which the run is invalid."""
MAX_429_SHARE = 0.01
"""The most requests (as a share of those sent) the server may shed with a 429."""
RSS_GROWTH_LIMIT = 0.10
"""The issue's target: RSS at the end within 10% of RSS after the warm-up."""


def soak_duration() -> float:
    """The soak phase's length from SOAK_DURATION_S, with a clear error for a bad value."""
    raw = os.environ[DURATION_ENV]
    try:
        seconds = float(raw)
    except ValueError:
        raise ValueError(f"{DURATION_ENV}={raw!r} is not a number; set it to the soak's seconds, e.g. 600") from None
    if seconds < 60:
        raise ValueError(f"{DURATION_ENV}={raw!r} is under 60 s: two Redis restarts and the recovery after each need longer")
    return seconds


class RestartableRedis:
    """A redis-server that can be stopped and started again on the same port."""

    def __init__(self, workdir: Path) -> None:
        self._workdir = workdir
        self._stack = contextlib.ExitStack()
        self.server: RedisServer = self._stack.enter_context(redis_server(workdir))

    def restart(self, down_s: float) -> None:
        """SIGTERM the server, wait `down_s`, start a fresh one on the same port (blocks; run it in a thread)."""
        port = self.server.port
        self._stack.close()
        self.server.proc.wait()
        self._stack = contextlib.ExitStack()
        time.sleep(down_s)
        self.server = self._stack.enter_context(redis_server(self._workdir, port))

    def close(self) -> None:
        """Stop the current server."""
        self._stack.close()


@contextlib.contextmanager
def serve_process(model_dir: Path, redis_url: str, backoff_s: float, log: Path) -> Iterator[tuple[str, int]]:
    """`python -m workloads.serve` with the Redis cache on a free port until the block ends; yields (URL, pid)."""
    port = free_port()
    flags = {"model_uri": str(model_dir), "model_name": MODEL, "host": "127.0.0.1", "port": str(port), "torch_threads": "1",
             "log_level": "warning", "redis_url": redis_url, "cache_backoff_s": f"{backoff_s:g}"}
    args = [part for field, value in flags.items() for part in (ServeSettings.flag_name(field), value)]
    with log.open("wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "workloads.serve", *args], stdout=err, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http_ok(f"{base}/v2/health/ready", proc, 120, log)
        yield base, proc.pid
    finally:
        stop_process(proc, timeout=30)


def cache_error_kinds(log: Path) -> dict[str, int]:
    """The server's logged cache errors (JSON lines, event `cache_error`) counted by exception class."""
    kinds: Counter[str] = Counter()
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("{") and '"cache_error"' in line:
            kinds[json.loads(line).get("error", "").split("(", 1)[0]] += 1
    return dict(kinds)


def cache_errors(metrics_text: str) -> float:
    """The server's cache error counter from its /metrics text."""
    lines = [line for line in metrics_text.splitlines() if line.startswith(INFERENCE_CACHE_ERRORS_TOTAL + " ")]
    return float(lines[0].split()[-1]) if lines else 0.0


async def soak(base: str, pid: int, redis: RestartableRedis, duration: float) -> dict[str, Any]:
    """Measure capacity, warm up at the soak's rate, then run the open-loop soak with the two Redis restarts."""
    async with make_client(base, CONCURRENCY) as client:
        warm = await client.completions.create(**completion_body(MODEL, "warm", 4))
        assert warm.choices
        capacity, probe = await closed_loop(client, MODEL, MAX_TOKENS, CONCURRENCY, CAPACITY_S)
        assert all(o.status == 200 for o in probe), Counter(o.status for o in probe)
    rate = LOAD_SHARE * capacity
    hot = [f"hot {h} the quick " for h in range(HOT_PROMPTS)]

    def bodies(phase: str) -> Callable[[int], dict[str, Any]]:
        def body_for(i: int) -> dict[str, Any]:
            prompt = hot[(i // HOT_EVERY) % HOT_PROMPTS] if i % HOT_EVERY == 0 else f"{phase} {i} the lazy "
            return completion_body(MODEL, prompt, MAX_TOKENS)
        return body_for

    async def restart() -> None:
        await asyncio.to_thread(redis.restart, REDIS_DOWN_S)

    actions = [(duration / 3, "redis restart 1", restart), (2 * duration / 3, "redis restart 2", restart)]
    # Every request in flight may hold a connection for up to its timeout; fewer would queue them inside the client.
    async with make_client(base, math.ceil(rate * REQUEST_TIMEOUT_S) + CONCURRENCY) as client:
        warmup = await open_loop(client, rate, WARMUP_S, bodies("warmup"), [], lambda: rss_kib(pid), BUCKET_S)
        cpu_before = (time.process_time(), cpu_s(pid))
        run = await open_loop(client, rate, duration, bodies("soak"), actions, lambda: rss_kib(pid), BUCKET_S)
        cpu = {"generator_cpu_s": time.process_time() - cpu_before[0], "server_cpu_s": cpu_s(pid) - cpu_before[1]}
    return {"capacity_rps": capacity, "rate_rps": rate, "warmup": warmup, "run": run, **cpu}


def summarise(figures: dict[str, Any], duration: float, backoff: float, log: Path) -> dict[str, Any]:
    """The run's totals: requests by outcome, lost by cause, send rate, CPU, cache errors, RSS before and after the
    warm-up and at the end."""
    run, warmup = figures["run"], figures["warmup"]
    lost = [o for o in run.outcomes if o.status is None]
    rss_start, rss_baseline, rss_end = warmup.rss_kib[0][1], run.rss_kib[0][1], run.rss_kib[-1][1]
    minutes = bucket_rows(run, BUCKET_S, duration)
    return {
        "duration_s": duration, "capacity_rps": round(figures["capacity_rps"], 1), "rate_rps": round(figures["rate_rps"], 1),
        "min_minute_sent_rps": round(min(row["sent_rps"] for row in minutes), 1),
        "sent": run.sent, "answered_by_status": dict(Counter(str(o.status) for o in run.outcomes if o.status is not None)),
        "share_429_pct": round(100 * sum(o.status == 429 for o in run.outcomes) / max(1, run.sent), 2),
        "lost": len(lost), "lost_by_error": dict(Counter(o.error for o in lost)),
        "max_send_lag_ms": round(run.max_send_lag_s * 1000, 1),
        "warmup_by_status": dict(Counter(str(o.status) for o in warmup.outcomes)),
        "generator_cpu_s": round(figures["generator_cpu_s"], 1), "server_cpu_s": round(figures["server_cpu_s"], 1),
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()], "cpus": os.cpu_count(),
        "server_cache_errors": figures["cache_errors"], "cache_errors_by_kind": cache_error_kinds(log),
        "cache_backoff_s": backoff, "rss_start_mib": round(rss_start / 1024, 1),
        "rss_after_warmup_mib": round(rss_baseline / 1024, 1), "rss_end_mib": round(rss_end / 1024, 1),
        "rss_growth_pct": round(100 * (rss_end / rss_baseline - 1), 2),
        "events": [[round(t, 1), label] for t, label in run.events],
    }


def write_report(folder: Path, run: OpenLoopRun, summary: dict[str, Any], duration: float) -> None:
    """soak.md (the per-minute table and the totals) and soak.json (everything, with 5 s rows) in `folder`; print both."""
    report = (f"soak: {duration:.0f} s at {LOAD_SHARE:.0%} of {summary['capacity_rps']} req/s measured capacity = "
              f"{summary['rate_rps']} req/s (achieved: at least {summary['min_minute_sent_rps']} req/s each minute; "
              f"429s: {summary['share_429_pct']}% of {summary['sent']}), {MAX_TOKENS}-token greedy completions, "
              f"1 in {HOT_EVERY} from {HOT_PROMPTS} hot prompts; Redis restarted at 1/3 and 2/3 "
              f"(down {REDIS_DOWN_S:.0f} s each)\n\n"
              f"{render_table(bucket_rows(run, BUCKET_S, duration), BUCKET_S)}\n\n"
              + "\n".join(f"- {key}: {value}" for key, value in summary.items()) + "\n")
    (folder / "soak.md").write_text(report)
    (folder / "soak.json").write_text(json.dumps({"summary": summary, "rows": bucket_rows(run, BUCKET_S, duration),
                                                  "fine_rows": bucket_rows(run, FINE_BUCKET_S, duration)}, indent=2))
    print(f"\n{report}\nfigures written to {folder / 'soak.md'} and soak.json")
    print(json.dumps({"soak": summary}))


@pytest.mark.skipif(DURATION_ENV not in os.environ, reason=f"set {DURATION_ENV} (seconds) to run the soak: `make soak`")
@pytest.mark.timeout(3600)
def test_soak_server_with_redis_restarts(tmp_path: Path) -> None:
    duration = soak_duration()
    backoff = min(DEFAULT_BACKOFF_S, duration / 12)
    write_tiny_export(tmp_path / "tiny-lm")
    redis = RestartableRedis(tmp_path)
    log = tmp_path / "serve.log"
    try:
        with serve_process(tmp_path / "tiny-lm", redis.server.url, backoff, log) as (base, pid):
            figures = asyncio.run(soak(base, pid, redis, duration))
            figures["cache_errors"] = cache_errors(httpx.get(f"{base}/metrics", timeout=10).text)
    finally:
        redis.close()
    run = figures["run"]
    summary = summarise(figures, duration, backoff, log)
    write_report(tmp_path, run, summary, duration)
    statuses, lost = summary["answered_by_status"], summary["lost"]
    growth = summary["rss_growth_pct"] / 100

    assert run.sent == len(run.outcomes), "a sent request ended without an outcome"
    # BAD_RESPONSE (-1) is an answer that is not a completion (see load.send): as bad as a 5xx.
    failed = {status: n for status, n in statuses.items() if int(status) >= 500 or int(status) < 0}
    assert not failed, f"server errors: {failed}\n{log_tail(log)}"
    # Past this the run was no longer the open loop it claims: the rate, the latencies and any lost request measure
    # a starved load generator (on a shared machine, other work taking the cores), not the server.
    assert run.max_send_lag_s < MAX_SEND_LAG_S, (
        f"the load generator fell {run.max_send_lag_s:.1f} s behind its schedule (load average at the end "
        f"{summary['load_average_at_end']} on {summary['cpus']} CPUs): invalid run; rerun `make soak` on a machine "
        "with cores to spare")
    assert summary["min_minute_sent_rps"] >= MIN_RATE_SHARE * run.rate, (
        f"a minute's achieved send rate was {summary['min_minute_sent_rps']} req/s, under {MIN_RATE_SHARE:.0%} of the "
        f"target {run.rate:.1f}: invalid run (the generator could not keep the schedule); rerun on an idle machine")
    assert summary["share_429_pct"] <= 100 * MAX_429_SHARE, (
        f"{summary['share_429_pct']}% of the requests got a 429 (over {MAX_429_SHARE:.0%}): capacity mis-measured or "
        f"machine contended (load average {summary['load_average_at_end']} on {summary['cpus']} CPUs)")
    assert not lost, f"{lost} requests lost: {summary['lost_by_error']}"
    assert growth < RSS_GROWTH_LIMIT, (
        f"RSS grew {100 * growth:.1f}% after the warm-up ({summary['rss_after_warmup_mib']} -> {summary['rss_end_mib']} MiB)")
    assert figures["cache_errors"] > 0, "the server never saw a Redis error: the restarts did not reach it"
    for restart in (duration / 3, 2 * duration / 3):
        # The breaker may trip until Redis is back, so hits resume at most one backoff window after that, plus the
        # refill of the hot prompts (Redis comes back empty). Before the one-retry fix in cache.py every connection
        # pooled before the restart failed once, each tripping the breaker for another window: minutes without hits.
        deadline = restart + REDIS_DOWN_S + backoff + RECOVERY_MARGIN_S
        assert any(restart < o.due_s < deadline and o.cache == HIT for o in run.outcomes), \
            f"no cache hit from the restart at {restart:.0f} s to {deadline:.0f} s: the cache did not recover in time"
