"""The per-key rate limit with the official client: the gateway's own default caps one key, which is why infra renders
rateLimitRps (0 unless a service sets it); a set limit refuses with 429 past its bucket."""

from __future__ import annotations

from typing import Any

import openai
import pytest
from fastapi import FastAPI

from tests.support.servers import free_port
from tests.workloads.gateway.support import live_gateway, serve_in_thread
from workloads.gateway.settings import GatewaySettings, default_burst

COMPLETION = {"id": "cmpl-1", "object": "text_completion", "created": 0, "model": "m",
              "choices": [{"index": 0, "text": "ok", "finish_reason": "stop", "logprobs": None}]}


def _upstream() -> FastAPI:
    app = FastAPI()

    @app.post("/v1/completions")
    async def completions() -> dict[str, Any]:
        return COMPLETION

    return app


def _answered(requests: int, **limit: Any) -> tuple[int, int]:
    """(answered, refused with 429) of `requests` back-to-back completions with one key through a gateway."""
    port = free_port()
    answered = refused = 0
    with serve_in_thread(_upstream(), port), live_gateway(f"http://127.0.0.1:{port}", **limit) as gateway:
        client = gateway.openai()
        for _ in range(requests):
            try:
                client.completions.create(model="m", prompt="hi", max_tokens=1)
                answered += 1
            except openai.RateLimitError:
                refused += 1
    return answered, refused


def test_the_gateways_default_keeps_its_bucket_of_two_seconds() -> None:
    defaults = GatewaySettings.model_fields
    assert (defaults["rate_limit_rps"].default, defaults["rate_limit_burst"].default) == (10.0, 20)
    assert [default_burst(rps) for rps in (10.0, 0.2, 2.5, 0.0)] == [20, 1, 5, 1]


def test_the_gateways_own_default_caps_a_key_shared_by_every_client() -> None:
    # 60 back-to-back requests: unless each takes over 66 ms, the bucket (20, refilled at 10/s) runs dry.
    answered, refused = _answered(60, rate_limit_rps=10.0, rate_limit_burst=20)
    assert answered >= 20 and refused >= 1, (answered, refused)


@pytest.mark.parametrize(("limit", "expected"), [
    ({"rate_limit_rps": 0}, (30, 0)),
    ({"rate_limit_rps": 0.01, "rate_limit_burst": 3}, (3, 27)),
], ids=["rendered default off", "a set limit"])
def test_one_key_is_limited_only_as_configured(limit: dict[str, Any], expected: tuple[int, int]) -> None:
    assert _answered(30, **limit) == expected
