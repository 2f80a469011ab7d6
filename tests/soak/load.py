"""The soak's load generator and its accounting: closed-loop capacity, open-loop constant rate, per-bucket figures.

The client is the official `openai` one (the server's /v1 routes are OpenAI-compatible) with `max_retries=0`: a
retry would hide exactly the failures the soak counts. Its HTTP layer is `httpx2` (openai's own dependency, pinned in
the lock), so the connection limits and the transport errors are httpx2's. Each request ends as one `Outcome`: a response with its
status, or "lost" (sent, no response: a connection error, a client timeout or any other client error).
"""

from __future__ import annotations

import asyncio
import math
import os
import statistics
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import openai

from workloads.serve.cache import BYPASS, HIT, STATUS_HEADER

REQUEST_TIMEOUT_S = 30.0
"""Deadline per request from its send; a request without a response by then counts as lost."""
KEEPALIVE_EXPIRY_S = 2.0
"""Client-side idle connection lifetime, below the server's (workloads.common.settings.HTTP_KEEP_ALIVE_S, and
uvicorn's 5 s default): the client drops a pooled connection before the server can close it under a request being
sent (a reset = "lost")."""
BAD_RESPONSE = -1
"""The status recorded for an answer that is not a valid completion (a 200 without a choice, or one the client cannot
parse): as bad as a 5xx."""


@dataclass(frozen=True)
class Outcome:
    """One request's fate."""

    due_s: float
    """When the schedule said to send it, seconds from the start of the run."""
    sent_s: float
    """When it was actually handed to the client, seconds from the start of the run (sent_s - due_s: generator lag)."""
    latency_s: float
    """From `sent_s` to the response: the server's (and the loopback's) share only."""
    status: int | None
    """The HTTP status; None when lost."""
    cache: str = ""
    """The response's cache header (hit, miss or bypass: Redis not asked); "" when absent or lost."""
    error: str = ""
    """For a lost request, the client's exception and its causes (see cause_chain)."""


def completion_body(model: str, prompt: str, max_tokens: int) -> dict[str, Any]:
    """A greedy (so cacheable) completion request."""
    return {"model": model, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0}


def make_client(base_url: str, max_connections: int) -> openai.AsyncOpenAI:
    """The official client on the server's /v1, no retries, REQUEST_TIMEOUT_S per phase (send adds a total deadline).

    `max_connections` must exceed the requests that can be in flight (rate x REQUEST_TIMEOUT_S in an open loop), or
    requests queue for a connection inside the client and the loop is no longer open.
    """
    limits = httpx2.Limits(max_connections=max_connections, max_keepalive_connections=max_connections,
                          keepalive_expiry=KEEPALIVE_EXPIRY_S)
    return openai.AsyncOpenAI(base_url=f"{base_url}/v1", api_key="soak", max_retries=0, timeout=REQUEST_TIMEOUT_S,
                              http_client=openai.DefaultAsyncHttpxClient(limits=limits, timeout=REQUEST_TIMEOUT_S))


def cause_chain(exc: BaseException) -> str:
    """The exception and its causes, outermost first: `ReadError <- BrokenResourceError <- ConnectionResetError(104)`."""
    parts: list[str] = []
    current: BaseException | None = exc
    while current is not None and len(parts) < 6:
        errno = getattr(current, "errno", None)
        parts.append(type(current).__name__ + (f"({errno})" if errno else ""))
        current = current.__cause__ or current.__context__
    return " <- ".join(parts)


async def send(client: openai.AsyncOpenAI, body: dict[str, Any], due_s: float, start: float) -> Outcome:
    """Send one completion; never raises for a failed request (the failure is the outcome)."""
    sent = time.monotonic()

    def outcome(status: int | None, cache: str = "", error: str = "") -> Outcome:
        return Outcome(due_s, sent - start, time.monotonic() - sent, status, cache, error)

    try:
        # httpx's timeout bounds each phase (pool wait, connect, read); this bounds the whole request.
        async with asyncio.timeout(REQUEST_TIMEOUT_S):
            raw = await client.completions.with_raw_response.create(**body)
        completion = raw.parse()
        status = raw.http_response.status_code if completion.choices else BAD_RESPONSE
        return outcome(status, raw.headers.get(STATUS_HEADER, ""))
    except openai.APIStatusError as exc:
        return outcome(exc.status_code, exc.response.headers.get(STATUS_HEADER, ""))
    except openai.APIResponseValidationError as exc:  # an answer, but not a completion
        return outcome(BAD_RESPONSE, error=cause_chain(exc))
    # openai's APITimeoutError is an APIConnectionError (an OpenAIError); any other client error is a lost request too,
    # so that one odd failure cannot abort the gather and the run's figures with it.
    except (openai.OpenAIError, httpx2.HTTPError, TimeoutError) as exc:
        return outcome(None, error=cause_chain(exc))


async def closed_loop(client: openai.AsyncOpenAI, model: str, max_tokens: int, concurrency: int,
                      seconds: float) -> tuple[float, list[Outcome]]:
    """`concurrency` clients sending distinct prompts back to back for `seconds`: completed requests/s, outcomes."""
    outcomes: list[Outcome] = []
    start = time.monotonic()

    async def worker(w: int) -> None:
        i = 0
        while time.monotonic() - start < seconds:
            due = time.monotonic() - start
            outcomes.append(await send(client, completion_body(model, f"capacity {w} {i} the ", max_tokens), due, start))
            i += 1

    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    elapsed = time.monotonic() - start
    return sum(o.status == 200 for o in outcomes) / elapsed, outcomes


@dataclass
class OpenLoopRun:
    """What an open-loop run produced."""

    outcomes: list[Outcome]
    """One per request sent, in send order."""
    sent: int
    """Requests handed to the client (each must end as an outcome)."""
    max_send_lag_s: float
    """The worst delay between a request's due time and its send (the generator's own CPU headroom)."""
    rate: float
    """The target send rate, requests/s."""
    events: list[tuple[float, str]] = field(default_factory=list)
    """(seconds from start, what happened), e.g. the Redis restarts."""
    rss_kib: list[tuple[float, int]] = field(default_factory=list)
    """(seconds from start, the server's RSS in KiB), sampled each bucket."""


async def open_loop(client: openai.AsyncOpenAI, rate: float, seconds: float, body_for: Callable[[int], dict[str, Any]],
                    actions: Sequence[tuple[float, str, Callable[[], Awaitable[None]]]], rss: Callable[[], int],
                    bucket_s: float) -> OpenLoopRun:
    """Send request i at i/rate seconds whatever the earlier ones are doing; run each action at its time.

    Actions (Redis restarts) and RSS samples run as their own tasks, so they never delay the schedule.
    """
    start = time.monotonic()
    run = OpenLoopRun(outcomes=[], sent=0, max_send_lag_s=0.0, rate=rate)
    tasks: list[asyncio.Task[Outcome]] = []

    async def at(when: float, label: str, action: Callable[[], Awaitable[None]]) -> None:
        await asyncio.sleep(max(0.0, start + when - time.monotonic()))
        run.events.append((time.monotonic() - start, f"{label} begins"))
        await action()
        run.events.append((time.monotonic() - start, f"{label} done"))

    async def sample_rss() -> None:
        tick = 0
        while tick * bucket_s <= seconds:
            await asyncio.sleep(max(0.0, start + tick * bucket_s - time.monotonic()))
            run.rss_kib.append((time.monotonic() - start, rss()))
            tick += 1

    side = [asyncio.create_task(at(when, label, action)) for when, label, action in actions]
    side.append(asyncio.create_task(sample_rss()))
    i = 0
    while (due := i / rate) < seconds:
        await asyncio.sleep(max(0.0, start + due - time.monotonic()))
        tasks.append(asyncio.create_task(send(client, body_for(i), due, start)))
        run.sent += 1
        i += 1
    run.outcomes = list(await asyncio.gather(*tasks))
    # Measured where the request starts (send's first line), so a task waiting for the loop counts as lag too.
    run.max_send_lag_s = max((o.sent_s - o.due_s for o in run.outcomes), default=0.0)
    await asyncio.gather(*side)
    run.rss_kib.append((time.monotonic() - start, rss()))
    return run


def rss_kib(pid: int) -> int:
    """A process's resident set size in KiB, from /proc/<pid>/status (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS in /proc/{pid}/status: the process has exited")


def cpu_s(pid: int) -> float:
    """A process's user + system CPU seconds so far, from /proc/<pid>/stat."""
    # Fields after the command (in parentheses, which may hold spaces): utime and stime are the 12th and 13th.
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def quantile_ms(latencies: list[float], q: float) -> float:
    """The q-quantile (0..1) of latencies in seconds, in ms; nearest rank ceil(q*n), so p99 of 100 samples is the 99th."""
    ordered = sorted(latencies)
    return 1000 * ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def bucket_rows(run: OpenLoopRun, bucket_s: float, seconds: float) -> list[dict[str, Any]]:
    """Per bucket of send time: requests, achieved send rate, statuses, lost, cache hits, p50/p99 (ms) of the 200s from
    their send (and p99 from their due time, generator lag included) and the RSS sampled at its end.

    The last bucket is the partial one (ceil) and also holds any request sent past `seconds`; its send rate is over
    the time up to its last send, so a generator that fell behind shows a rate below the target.
    """
    rows = []
    buckets = max(1, math.ceil(seconds / bucket_s))
    for b in range(buckets):
        lo, hi = b * bucket_s, (b + 1) * bucket_s if b < buckets - 1 else float("inf")
        inside = [o for o in run.outcomes if lo <= o.sent_s < hi]
        ok = [o for o in inside if o.status == 200]
        until = max([min(hi, seconds), *(o.sent_s for o in inside)]) if hi == float("inf") else hi
        served = [o.latency_s for o in ok]
        rss_after = [kib for t, kib in run.rss_kib if t >= min(hi, seconds) - 1]
        rows.append({
            "from_s": lo, "requests": len(inside), "sent_rps": len(inside) / (until - lo),
            "by_status": dict(Counter(str(o.status) for o in inside if o.status)),
            "lost": sum(o.status is None for o in inside), "hits": sum(o.cache == HIT for o in inside),
            "bypass": sum(o.cache == BYPASS for o in inside),
            "p50_ms": statistics.median(served) * 1000 if served else None,
            "p99_ms": quantile_ms(served, 0.99) if served else None,
            "p99_from_due_ms": quantile_ms([o.sent_s - o.due_s + o.latency_s for o in ok], 0.99) if ok else None,
            "rss_mib": rss_after[0] / 1024 if rss_after else None,
            "events": [label for t, label in run.events if lo <= t < hi],
        })
    return rows


def render_table(rows: list[dict[str, Any]], bucket_s: float) -> str:
    """The per-bucket figures as a Markdown table."""
    def ms(value: float | None) -> str:
        return f"{value:.1f}" if value is not None else "-"

    lines = [f"| from s ({bucket_s:.0f} s rows, by send time) | sent | sent/s | 200 | other statuses | lost | cache hits "
             "| cache bypass | p50 ms (200s) | p99 ms (200s) | p99 ms from due | RSS MiB | events |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        other = ", ".join(f"{k}: {v}" for k, v in sorted(row["by_status"].items()) if k != "200") or "0"
        lines.append(f"| {row['from_s']:.0f} | {row['requests']} | {row['sent_rps']:.1f} | {row['by_status'].get('200', 0)} "
                     f"| {other} | {row['lost']} | {row['hits']} | {row['bypass']} | {ms(row['p50_ms'])} "
                     f"| {ms(row['p99_ms'])} | {ms(row['p99_from_due_ms'])} | {ms(row['rss_mib'])} "
                     f"| {'; '.join(row['events'])} |")
    return "\n".join(lines)
