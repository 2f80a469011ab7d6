"""The gateway's cache against a real redis-server that is stopped and restarted, with its URL read from a Secret
file: answers during the backoff say `bypass` (Redis was not asked), not `miss`."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import openai
from fastapi import FastAPI

from tests.support.servers import RedisServer, free_port, redis_server
from tests.workloads.gateway.support import API_KEY, live_gateway, serve_in_thread
from workloads.gateway.handlers import CACHE_HEADER
from workloads.serve.cache import BYPASS, HIT, MISS


def _upstream(calls: list[int]) -> FastAPI:
    """An OpenAI-compatible upstream answering every completion with the same text, counting its calls."""
    app = FastAPI()

    @app.post("/v1/completions")
    async def completions() -> dict[str, Any]:
        calls.append(1)
        return {"id": "cmpl-1", "object": "text_completion", "created": 1, "model": "m",
                "choices": [{"index": 0, "text": "a fox", "finish_reason": "length", "logprobs": None}],
                "usage": {"prompt_tokens": 2, "completion_tokens": 2, "total_tokens": 4}}

    return app


def test_answers_during_the_backoff_say_bypass_and_the_cache_resumes_after_a_restart(redis: RedisServer,
                                                                                     tmp_path: Path) -> None:
    url_file = tmp_path / "redis-url"
    url_file.write_text(f"{redis.url}\n")
    calls: list[int] = []
    port = free_port()
    with serve_in_thread(_upstream(calls), port), \
            live_gateway(f"http://127.0.0.1:{port}", redis_url_file=url_file, cache_backoff_s=1.0) as gateway, \
            openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=API_KEY, max_retries=0, timeout=30) as client:
        def status() -> str:
            answer = client.completions.with_raw_response.create(model="m", prompt="the", max_tokens=2,
                                                                  temperature=0)
            assert answer.parse().choices[0].text == "a fox"
            return answer.headers[CACHE_HEADER]

        before = [status(), status()]
        redis.proc.kill()
        redis.proc.wait()
        outage = [status(), status(), status()]
        with redis_server(tmp_path, port=redis.port):
            time.sleep(1.1)
            after = [status(), status()]
    assert before == [MISS, HIT]
    assert outage == [MISS, BYPASS, BYPASS], "only the first call of the window asks Redis"
    assert after == [MISS, HIT]
    assert len(calls) == 5, "every answer but the two hits came from the upstream"
