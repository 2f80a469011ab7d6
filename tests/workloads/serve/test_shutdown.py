"""A real `python -m workloads.serve`: on SIGTERM in-flight requests finish, new ones are refused, exit 0; idle
connections outlive the clients' own idle expiry."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.support.servers import free_port
from workloads.common import metrics as names
from workloads.common.settings import HTTP_KEEP_ALIVE_S
from workloads.lm.model import GPT


async def _in_flight_then_sigterm(
    url: str, proc: subprocess.Popen[bytes]
) -> tuple[list[httpx.Response], str, str, float]:
    """Start 4 plain and 1 streamed request, SIGTERM, probe readiness; returns the results and the last finish lag."""
    body = {"model": "tiny-lm", "prompt": "the", "max_tokens": 200, "temperature": 0}
    finished: list[float] = []
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        async def complete(prompt: str) -> httpx.Response:
            response = await client.post("/v1/completions", json={**body, "prompt": prompt})
            finished.append(time.monotonic())
            return response

        plain = [asyncio.create_task(complete(f"p{i}")) for i in range(4)]

        async def stream() -> str:
            async with client.stream("POST", "/v1/completions", json={**body, "stream": True}) as response:
                return (await response.aread()).decode()

        streamed = asyncio.create_task(stream())
        # Signal once all five reached the engine: with batch size 1, four of them still wait behind a 200-token
        # generation, so requests are in flight at SIGTERM however fast the machine is.
        await _until_submitted(client, 5)
        proc.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        await asyncio.sleep(0.2)
        async with httpx.AsyncClient(base_url=url, timeout=5) as fresh:
            try:
                after = str((await fresh.get("/v2/health/ready")).status_code)
            except httpx.TransportError as exc:
                after = type(exc).__name__
        responses = list(await asyncio.gather(*plain))
        return responses, await streamed, after, max(finished) - signalled


async def _until_submitted(client: httpx.AsyncClient, count: int) -> None:
    """Wait until `count` requests reached the engine: queued plus batches started (each batch is one request)."""
    async with asyncio.timeout(60):
        while True:
            samples = {sample.name: sample.value for family in text_string_to_metric_families(
                (await client.get("/metrics")).text) for sample in family.samples}
            if samples.get(names.INFERENCE_QUEUE_DEPTH, 0) + samples.get(f"{names.INFERENCE_BATCH_SIZE}_count", 0) \
                    >= count:
                return
            await asyncio.sleep(0.01)


def _start(export: Path, log: Path, drain_timeout_s: int) -> tuple[subprocess.Popen[bytes], str]:
    """`python -m workloads.serve` with batches of one, once it is ready; returns the process and its URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "MODELPLANE_SERVE_TORCH_THREADS": "1", "MODELPLANE_SERVE_MAX_BATCH_SIZE": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "workloads.serve", "--model-uri", str(export), "--host", "127.0.0.1",
         "--port", str(port), "--drain-timeout-s", str(drain_timeout_s)],
        env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 90
    while True:
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(log.read_text())
        try:
            if httpx.get(f"{url}/v2/health/ready", timeout=2).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass  # not listening yet
        time.sleep(0.1)


def test_sigterm_lets_in_flight_requests_finish_and_exits_zero(tiny_export: tuple[Path, GPT], tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    proc, url = _start(tiny_export[0], log, 30)
    try:
        responses, streamed, after, lag = asyncio.run(_in_flight_then_sigterm(url, proc))
        code = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert lag > 0, "some requests were still in flight when SIGTERM arrived"
    assert [r.status_code for r in responses] == [200] * 4
    assert [r.json()["usage"]["completion_tokens"] for r in responses] == [200] * 4
    events = [e.removeprefix("data: ") for e in streamed.split("\n\n") if e]
    assert events[-1] == "[DONE]"
    assert json.loads(events[-2])["choices"][0]["finish_reason"] == "length"
    assert after in {"503", "ConnectError"}, "after SIGTERM the server is not ready for new work"
    assert code == 0, log.read_text()
    assert '"event": "draining"' in log.read_text()


async def _sigterm_with_requests_in_flight(url: str, proc: subprocess.Popen[bytes]) -> list[httpx.Response]:
    body = {"model": "tiny-lm", "prompt": "the", "max_tokens": 250, "temperature": 0}
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        tasks = [asyncio.create_task(client.post("/v1/completions", json=body)) for _ in range(8)]
        await _until_submitted(client, 8)
        proc.send_signal(signal.SIGTERM)
        return list(await asyncio.gather(*tasks))


def test_a_drain_that_runs_out_of_time_answers_json_503(tiny_export: tuple[Path, GPT], tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    proc, url = _start(tiny_export[0], log, 0)
    try:
        responses = asyncio.run(_sigterm_with_requests_in_flight(url, proc))
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    # With batches of one, requests still wait behind 250-token generations when the zero-second drain ends.
    assert [r.status_code for r in responses].count(503) >= 4, log.read_text()
    for response in responses:
        assert response.status_code in {200, 503}
        if response.status_code == 503:
            assert response.headers["content-type"] == "application/json"
            assert "shut down before this request finished" in response.json()["error"]["message"]


def test_an_idle_connection_is_still_open_after_the_clients_idle_expiry(tiny_export: tuple[Path, GPT],
                                                                       tmp_path: Path) -> None:
    # Uvicorn's default closes idle connections after 5 s, httpx's pool keeps them 5 s: a request sent as the server
    # closes is reset (the soak lost requests that way). Ours keeps them HTTP_KEEP_ALIVE_S.
    assert HTTP_KEEP_ALIVE_S > 10
    log = tmp_path / "server.log"
    proc, url = _start(tiny_export[0], log, 5)
    try:
        connection = http.client.HTTPConnection(url.removeprefix("http://"), timeout=10)
        connection.request("GET", "/v2/health/ready")
        assert connection.getresponse().read() is not None
        socket_before = connection.sock
        time.sleep(6.5)
        connection.request("GET", "/v2/health/ready")  # on the same socket: http.client does not reconnect
        response = connection.getresponse()
        response.read()
        assert response.status == 200
        assert connection.sock is socket_before
        connection.close()
    finally:
        proc.kill()
        proc.wait(timeout=30)
