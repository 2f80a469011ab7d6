"""A live gateway (uvicorn in a thread), a TCP proxy that can cut the upstream, and upstream request counts."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import httpx
import openai
import uvicorn
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from tests.support.servers import free_port
from tests.support.vllm import VllmServer
from workloads.gateway.app import create_app
from workloads.gateway.handlers import Gateway
from workloads.gateway.settings import GatewaySettings

API_KEY: Final = "sk-test-gateway-key"
"""The key every test gateway accepts (from a key file, as a mounted Kubernetes Secret provides it)."""


def scrape(url: str) -> dict[str, float]:
    """Every sample on `url` (a /metrics endpoint) as `name{label="v",...}` -> value (labels sorted)."""
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(httpx.get(url, timeout=10).text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


def upstream_requests(vllm: VllmServer) -> float:
    """Generation requests vLLM has finished (any reason): its own `vllm:request_success_total`, summed."""
    return sum(value for name, value in scrape(f"{vllm.base_url}/metrics").items()
               if name.startswith("vllm:request_success_total{"))


@dataclass
class LiveGateway:
    """A gateway app served by uvicorn on a free loopback port, in a background thread."""

    url: str
    app: FastAPI
    server: uvicorn.Server

    def openai(self, api_key: str = API_KEY, **kwargs: Any) -> openai.OpenAI:
        """The official client pointed at the gateway; no retries, so each call is one request."""
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=api_key, max_retries=0, timeout=60, **kwargs)

    def metrics(self) -> dict[str, float]:
        """The gateway's /metrics samples."""
        return scrape(f"{self.url}/metrics")

    def cache_written(self, timeout: float = 5.0) -> None:
        """Wait until the cache writes the gateway started after answering have finished."""
        gateway: Gateway = self.app.state.gateway
        deadline = time.monotonic() + timeout
        while gateway.pending_cache_writes and time.monotonic() < deadline:
            time.sleep(0.01)


@contextlib.contextmanager
def serve_in_thread(app: Any, port: int) -> Iterator[uvicorn.Server]:
    """Serve an ASGI app on 127.0.0.1:port until the block ends."""
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False, lifespan="on",
                            timeout_graceful_shutdown=1)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"uvicorn on port {port} did not start")
            time.sleep(0.01)
        yield server
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@contextlib.contextmanager
def live_gateway(upstream: str, **overrides: Any) -> Iterator[LiveGateway]:
    """A gateway in front of `upstream` accepting API_KEY, rate limit off; `overrides` are GatewaySettings fields."""
    port = free_port()
    with tempfile.TemporaryDirectory() as keys:
        key_file = Path(keys) / "api-keys"
        key_file.write_text(f"# one key per line\n{API_KEY}\n")
        fields: dict[str, Any] = {"upstream": upstream, "api_keys_file": key_file, "host": "127.0.0.1", "port": port,
                                  "rate_limit_rps": 0, **overrides}
        app = create_app(GatewaySettings(**fields))
        with serve_in_thread(app, port) as server:
            yield LiveGateway(url=f"http://127.0.0.1:{port}", app=app, server=server)


class TcpProxy:
    """Relays 127.0.0.1:port to a target port; `cut()` closes the listener and every connection, `restore()` reopens.

    Stands in for an upstream that dies and comes back (same address), without restarting vLLM.
    """

    def __init__(self, target_port: int) -> None:
        self.port = free_port()
        self._target = target_port
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"proxy-{self.port}", daemon=True)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._thread.start()

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=30)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._target)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        self._writers -= {writer, up_writer}

    async def _open(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):
                writer.transport.abort()
            await self._server.wait_closed()
            self._server = None

    def restore(self) -> None:
        """Listen (again) on the same port."""
        self._run(self._open())

    def cut(self) -> None:
        """Stop listening and reset every open connection: the upstream is gone."""
        self._run(self._close())

    def shutdown(self) -> None:
        """Cut and stop the proxy's thread."""
        self.cut()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)


@contextlib.contextmanager
def tcp_proxy(target_port: int) -> Iterator[TcpProxy]:
    """A running TcpProxy to `target_port`, shut down when the block ends."""
    proxy = TcpProxy(target_port)
    proxy.restore()
    try:
        yield proxy
    finally:
        proxy.shutdown()
