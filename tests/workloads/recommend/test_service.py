"""The recommendation service over a trained S3 export, live Redis features from the real processor, behind the gateway."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis as redis_py

from tests.support.dockerfile import REPO_ROOT
from tests.support.servers import RedisServer, S3Server, free_port
from tests.workloads.gateway.support import API_KEY, live_gateway, scrape
from tests.workloads.recommend.conftest import TOPIC, processor_settings, running, store_for, wait_until
from tests.workloads.recommend.model_support import ITEMS, cluster_of, live_service, new_bucket, trained_export
from workloads.common import metrics as names
from workloads.demo.kafka import TansuBroker
from workloads.recommend import storage
from workloads.recommend.events import Event
from workloads.recommend.features import FeatureStore, PartitionBatch
from workloads.recommend.loadgen import make_producer, produce
from workloads.recommend.model import CONFIG_FILE, WEIGHTS_SHA256

AUTH = {"authorization": f"Bearer {API_KEY}"}
"""The test gateway's API key."""
TARGET = 3
"""The cluster a test user's new events are about (user u0 belongs to cluster 0)."""


@pytest.fixture(scope="module")
def export(s3: S3Server) -> str:
    """A model trained on the planted-structure log and exported to the test S3 server, once per module."""
    return trained_export(new_bucket())


def _items(body: dict[str, Any]) -> list[str]:
    return [entry["item_id"] for entry in body["items"]]


def _in_target(body: dict[str, Any]) -> int:
    return sum(cluster_of(item) == TARGET for item in _items(body))


def test_the_service_loads_the_s3_export_and_answers_get_and_post_alike(export: str, redis: RedisServer) -> None:
    with live_service(export, redis_url=redis.url) as service:
        got = httpx.get(f"{service.url}/v1/recommendations/u0", params={"k": 5}, timeout=10)
        posted = httpx.post(f"{service.url}/v1/recommendations", json={"user_id": "u0", "k": 5}, timeout=10)
        samples = scrape(f"{service.url}/metrics")
    assert got.status_code == 200 and got.json() == posted.json()
    assert got.headers["cache-control"] == "no-store"
    body = got.json()
    assert body["source"] == "model" and body["features"] == "none" and body["degraded"] is False
    scores = [entry["score"] for entry in body["items"]]
    assert len(scores) == 5 and scores == sorted(scores, reverse=True)
    # The model learned the planted clusters: u0's top items are mostly of its own cluster 0.
    assert sum(cluster_of(item) == 0 for item in _items(body)) >= 4
    route = '{route="/v1/recommendations/{user_id}",status="200"}'
    assert samples[f"{names.RECOMMEND_REQUESTS_TOTAL}{route}"] == 1
    assert samples[f"{names.RECOMMEND_REQUEST_DURATION}_count{route}"] == 1


def test_a_users_last_events_lift_items_like_them_through_processor_redis_and_gateway(
        export: str, topics: TansuBroker, redis: RedisServer) -> None:
    settings = processor_settings(topics, redis)
    new_items = [f"i{n}" for n in range(ITEMS) if n % 6 == TARGET][:4]
    with running(settings), live_service(export, redis_url=redis.url, recent_weight=1.5) as service, \
            live_gateway(service.url, redis_url=redis.url) as gateway:  # the gateway's response cache is on
        url = f"{gateway.url}/v1/recommendations/u0?k=10"
        before = httpx.get(url, headers=AUTH, timeout=10)
        assert before.status_code == 200 and before.json()["features"] == "none"
        assert _in_target(before.json()) == 0
        now = time.time()
        events = [Event(event_id=f"e{n}", user_id="u0", item_id=item, type="click", ts=now + n)
                  for n, item in enumerate(new_items)]
        produce(make_producer(topics.bootstrap_servers), TOPIC, events)
        store = store_for(settings)
        wait_until(lambda: len(store.user("u0").recent) == len(new_items), "u0's events in Redis")
        after = httpx.get(url, headers=AUTH, timeout=10)
    assert after.status_code == 200 and after.headers["cache-control"] == "no-store"
    body = after.json()
    assert body["source"] == "model+recent" and body["features"] == "live" and body["recent_items"] == 4
    # Items of the cluster the user just clicked now fill much of the top 10; the clicked ones are left out.
    assert _in_target(body) >= 3, body
    assert not set(new_items) & set(_items(body))


def test_a_new_user_gets_neighbours_of_their_recent_items_and_a_stranger_popularity(
        export: str, redis: RedisServer) -> None:
    store = FeatureStore(redis_py.Redis.from_url(redis.url), prefix="rec:", recent_items=50, ttl_s=600, half_life_s=60)
    events = [(n, Event(event_id=f"n{n}", user_id="newcomer", item_id=f"i{6 * n + TARGET}", type="view", ts=1.0 + n))
              for n in range(3)]
    store.apply([PartitionBatch(topic=TOPIC, partition=0, last_offset=2, events=events)])
    with live_service(export, redis_url=redis.url) as service:
        newcomer = httpx.get(f"{service.url}/v1/recommendations/newcomer?k=5", timeout=10).json()
        stranger = httpx.post(f"{service.url}/v1/recommendations", json={"user_id": "stranger", "k": 5}, timeout=10)
    assert newcomer["source"] == "recent" and _in_target(newcomer) >= 4
    assert stranger.status_code == 200
    assert stranger.json()["source"] == "popularity" and stranger.json()["features"] == "none"


def test_exclude_seen_leaves_out_the_whole_recent_list_while_the_similarity_uses_the_newest(
        export: str, redis: RedisServer) -> None:
    # The processor keeps 50 recent items; the service's --recent-items (10) only bounds the similarity.
    store = FeatureStore(redis_py.Redis.from_url(redis.url), prefix="rec:", recent_items=50, ttl_s=600, half_life_s=60)
    seen = [f"i{n}" for n in range(30)]
    events = [(n, Event(event_id=f"s{n}", user_id="u0", item_id=item, type="view", ts=1.0 + n))
              for n, item in enumerate(seen)]
    store.apply([PartitionBatch(topic=TOPIC, partition=0, last_offset=len(seen) - 1, events=events)])
    with live_service(export, redis_url=redis.url) as service:
        body = httpx.get(f"{service.url}/v1/recommendations/u0?k=100", timeout=10).json()
        kept = httpx.get(f"{service.url}/v1/recommendations/u0?k=100&exclude_seen=false", timeout=10).json()
    assert len(body["items"]) == ITEMS - len(seen) and not set(seen) & set(_items(body))
    assert body["recent_items"] == 10 and body["excluded_items"] == 30
    assert kept["excluded_items"] == 0 and set(seen) & set(_items(kept))


@pytest.mark.parametrize(("method", "path", "body", "param", "message"), [
    ("GET", "/v1/recommendations/u1?k=0", None, "k", "k: Input should be greater than or equal to 1 (got '0')"),
    ("GET", "/v1/recommendations/u1?k=101", None, "k", "k: must be at most 100, the service's --max-k (got 101)"),
    ("GET", "/v1/recommendations/u1?k=ten", None, "k", "k: Input should be a valid integer"),
    ("GET", "/v1/recommendations/u%20x", None, "user_id", "user_id: String should match pattern"),
    ("GET", "/v1/recommendations/u1?exclude_seen=maybe", None, "exclude_seen", "exclude_seen: Input should be a valid"),
    ("POST", "/v1/recommendations", b'{"user_id": "u1", "k": ', "body", "body: invalid JSON"),
    ("POST", "/v1/recommendations", b'["u1"]', "body", "body: must be a JSON object"),
    ("POST", "/v1/recommendations", b'{"k": 3}', "user_id", "user_id: Field required"),
    ("POST", "/v1/recommendations", b'{"user_id": "u1", "top": 3}', "top", "top: Extra inputs are not permitted"),
    ("POST", "/v1/recommendations", b'{"user_id": "u1", "k": true}', "k", "k: Input should be a valid integer"),
])
def test_bad_input_is_a_400_naming_the_field_directly_and_through_the_gateway(
        export: str, method: str, path: str, body: bytes | None, param: str, message: str) -> None:
    with live_service(export) as service, live_gateway(service.url) as gateway:
        direct = httpx.request(method, service.url + path, content=body, timeout=10)
        proxied = httpx.request(method, gateway.url + path, content=body, headers=AUTH, timeout=10)
    for answer in (direct, proxied):
        assert answer.status_code == 400, answer.text
        error = answer.json()["error"]
        assert error["param"] == param and error["message"].startswith(message), error


def test_redis_down_degrades_to_the_model_alone_never_a_5xx(export: str) -> None:
    with live_service(export, redis_url=f"redis://127.0.0.1:{free_port()}/0") as service:
        answer = httpx.get(f"{service.url}/v1/recommendations/u0?k=3", timeout=10)
    assert answer.status_code == 200
    body = answer.json()
    assert body["degraded"] is True and body["features"] == "unavailable" and body["source"] == "model"
    assert len(body["items"]) == 3


def test_the_gateway_admits_recommendations_only_with_a_key_and_maps_a_dead_upstream(export: str) -> None:
    with live_service(export) as service, live_gateway(service.url) as gateway:
        refused = httpx.get(f"{gateway.url}/v1/recommendations/u0", timeout=10)
        samples = gateway.metrics()
    assert refused.status_code == 401
    route = '{route="/v1/recommendations/{user_id}",status="401"}'
    assert samples[f"{names.GATEWAY_REQUESTS_TOTAL}{route}"] == 1
    with live_gateway(f"http://127.0.0.1:{free_port()}") as gateway:
        down = httpx.post(f"{gateway.url}/v1/recommendations", json={"user_id": "u0"}, headers=AUTH, timeout=10)
    assert down.status_code == 503 and down.json()["error"]["code"] == "upstream_unavailable"


def test_a_half_rewritten_export_stops_the_service_with_a_clear_error_and_a_failed_exit(export: str, tmp_path: Path) -> None:
    # The config of an older export next to the weights of a newer one: same row counts, another digest.
    folder = storage.local_copy(export, tmp_path / "export")
    config = json.loads((folder / CONFIG_FILE).read_text())
    (folder / CONFIG_FILE).write_text(json.dumps({**config, WEIGHTS_SHA256: "0" * 64}))
    result = subprocess.run([sys.executable, "-m", "workloads.recommend.service", "--model-uri", str(folder),
                             "--host", "127.0.0.1", "--port", str(free_port())], cwd=REPO_ROOT, capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 3, result.stdout + result.stderr  # uvicorn's STARTUP_FAILURE: the pod restarts
    records = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    invalid = [r for r in records if r["event"] == "model_invalid"]
    assert invalid and "the files come from two exports" in invalid[0]["error"], result.stdout


def test_the_route_is_declared_once_and_imported_by_service_gateway_and_ingress() -> None:
    folders = ("workloads/common", "workloads/recommend", "workloads/gateway", "infra")
    declared = [str(path.relative_to(REPO_ROOT)) for folder in folders
                for path in sorted((REPO_ROOT / folder).rglob("*.py")) if '"/v1/recommendations' in path.read_text()]
    assert declared == ["workloads/common/vocab.py"]
