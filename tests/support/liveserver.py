"""An inference server app served by uvicorn in a background thread, for HTTP tests of any backend.

Torch-free, so the TF venv's tests of the TF-enabled server use it as the main venv's do.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from tests.support.servers import free_port
from workloads.serve.app import create_app
from workloads.serve.loader import Loader, load_backend
from workloads.serve.settings import ServeSettings
from workloads.serve.state import ServeState


@dataclass
class LiveServer:
    """An app served by uvicorn on a free loopback port, in a background thread."""

    url: str
    app: FastAPI
    server: uvicorn.Server

    @property
    def state(self) -> ServeState:
        """The app's runtime state."""
        state: ServeState = self.app.state.serve
        return state

    @property
    def name(self) -> str:
        """The served model name."""
        return self.state.settings.served_name

    def client(self, **kwargs: Any) -> httpx.Client:
        """A sync client bound to the server."""
        return httpx.Client(base_url=self.url, timeout=60, **kwargs)

    def async_client(self, **kwargs: Any) -> httpx.AsyncClient:
        """An async client bound to the server, with room for many concurrent connections."""
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
        return httpx.AsyncClient(base_url=self.url, timeout=60, limits=limits, **kwargs)

    def metrics(self) -> dict[str, float]:
        """Every sample on /metrics as `name{label="v",...}` -> value (labels sorted)."""
        text = httpx.get(f"{self.url}/metrics", timeout=10).text
        samples: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
                samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
        return samples

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Block until /v2/health/ready says 200."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/v2/health/ready", timeout=5).status_code == 200:
                    return
            time.sleep(0.05)
        raise TimeoutError(f"{self.url} not ready within {timeout}s")


@contextlib.contextmanager
def live_server(model_uri: str, *, loader: Loader = load_backend, wait_ready: bool = True,
                **overrides: Any) -> Iterator[LiveServer]:
    """Serve `create_app(settings)` until the block ends, then shut uvicorn down gracefully."""
    port = free_port()
    settings = ServeSettings(model_uri=model_uri, host="127.0.0.1", port=port, **overrides)
    app = create_app(settings, loader=loader)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False,
                            lifespan="on", timeout_graceful_shutdown=settings.drain_timeout_s)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    live = LiveServer(url=f"http://127.0.0.1:{port}", app=app, server=server)
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        if wait_ready:
            live.wait_ready()
        yield live
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def metric(samples: dict[str, float], key: str) -> float:
    """One sample's value, 0 when absent (a labelled counter appears only once incremented)."""
    return samples.get(key, 0.0)
