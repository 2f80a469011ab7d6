"""`make demo`'s recommendation step: the seed's real-time recommendation case on one machine.

logged interactions in S3 → the recommender's training job → its export → the recommendation service behind the
gateway, reading live features that the stream processor keeps in Redis from a Kafka-protocol broker (Tansu).
Then one user's new events stream in and the story times how long their recommendations take to follow them,
and shows the processor's lag and feature freshness from its /metrics.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import httpx

from workloads.common import metrics
from workloads.common.vocab import RECOMMENDATIONS_ROUTE
from workloads.demo.devservers import REPO, free_port, log_tail, stop_process, wait_http_ok
from workloads.demo.kafka import tansu_broker
from workloads.demo.llm import API_KEY, gateway
from workloads.recommend.events import Event
from workloads.recommend.loadgen import make_producer, produce
from workloads.recommend.model_settings import DatasetSettings, ServiceSettings, TrainSettings
from workloads.recommend.settings import DEFAULT_TOPIC, LoadgenSettings, ProcessorSettings

PARTITIONS: Final = 3
"""Partitions of the demo's events topic."""
LOG_URI: Final = "s3://datasets/recommend/interactions"
"""Where the logged interactions (the trainer's data) go."""
EXPORT_URI: Final = "s3://models/recommender"
"""Where the recommender's export goes."""
CLUSTERS: Final = DatasetSettings.model_fields["clusters"].default
"""Planted item clusters of the log and of the live stream (item i is in cluster i % CLUSTERS)."""
USER: Final = "u0"
"""The demo user: user u mostly picks items of cluster u % CLUSTERS, so u0 starts with cluster 0."""
NEW_CLUSTER: Final = 5
"""The cluster whose items the demo user turns to."""
NEW_EVENTS: Final = 20
"""How many events of the new cluster the demo user sends."""
TOP_K: Final = 10
"""Recommendations asked for."""
FOLLOWED: Final = 3
"""Items of the new cluster in the top-k that count as the recommendations having followed the user."""
FEATURE_REDIS_DB: Final = 2
"""Redis database of the live features (0 and 1 hold the two response caches of the other steps)."""
STREAM_EVENTS: Final = 6000
"""Background events streamed by the load generator while the story watches lag and freshness."""
STREAM_RATE: Final = 2000.0
"""Their rate, events per second."""
STATS_INTERVAL_S: Final = 1.0
"""How often the processor's librdkafka reports consumer lag."""


@dataclass
class RecommendStep:
    """What the recommendation step observed (the e2e test asserts on it)."""

    recall: dict[str, float] = field(default_factory=dict)
    """recall@10 on the held-out split, per ranker (model, popularity), from the trainer's log."""
    before: list[str] = field(default_factory=list)
    """The demo user's top-k item ids before their new events."""
    after: list[str] = field(default_factory=list)
    """Their top-k once it followed the new events."""
    followed_in_s: float | None = None
    """Seconds from the last new event delivered to the top-k holding FOLLOWED items of the new cluster."""
    processor_metrics: dict[str, float] = field(default_factory=dict)
    """Events applied, total consumer lag, and feature freshness (mean, seconds) from the processor's /metrics."""
    scrape_targets: list[str] = field(default_factory=list)
    """HOST:PORT of the processor's and the service's /metrics (they run until the caller's stack closes)."""


def _run(args: list[str], log: Path, env: Mapping[str, str], what: str) -> str:
    with log.open("wb") as out:
        done = subprocess.run([sys.executable, "-m", *args], cwd=REPO, env=dict(env), stdout=out,
                              stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed with exit code {done.returncode}:\n{log_tail(log)}")
    return log.read_text(errors="replace")


def _flags(settings: type[Any], **values: object) -> list[str]:
    """`--flag value` pairs of a workload's settings model (flag names from the model, one declaration)."""
    return [part for name, value in values.items() for part in (settings.flag_name(name), str(value))]


def _trained_recall(log: str) -> dict[str, float]:
    for line in log.splitlines():
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if isinstance(record, dict) and record.get("event") == "trained":
                evaluation = record.get("evaluation", {})
                return {ranker: float(evaluation[f"recall_at_10_{ranker}"]) for ranker in ("model", "popularity")
                        if f"recall_at_10_{ranker}" in evaluation}
    return {}


@contextlib.contextmanager
def _server(args: list[str], log: Path, env: Mapping[str, str], ready_url: str | None) -> Iterator[None]:
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", *args], cwd=REPO, env=dict(env), stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        if ready_url:
            wait_http_ok(ready_url, proc, 120, log, poll_s=0.3)
        yield
    finally:
        stop_process(proc, timeout=30)


def _top(client: httpx.Client, user: str) -> list[str]:
    response = client.get(f"{RECOMMENDATIONS_ROUTE}/{user}", params={"k": TOP_K})
    if response.status_code != 200:
        raise RuntimeError(f"recommendation failed: HTTP {response.status_code} {response.text[:300]}")
    return [item["item_id"] for item in response.json()["items"]]


def _in_cluster(items: list[str], cluster: int) -> int:
    return sum(1 for item in items if int(item.removeprefix("i")) % CLUSTERS == cluster)


def _new_cluster_events(user: str) -> list[Event]:
    items = DatasetSettings.model_fields["items"].default
    members = [i for i in range(items) if i % CLUSTERS == NEW_CLUSTER]
    return [Event(event_id=str(uuid.uuid4()), user_id=user, item_id=f"i{members[n % len(members)]}", type="click",
                  ts=time.time()) for n in range(NEW_EVENTS)]


def _scraped(text: str, name: str, suffix: str = "") -> float:
    """Sum of a metric's samples (`name` + `suffix`, any labels) in a /metrics text."""
    full = name + suffix
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith((f"{full} ", f"{full}{{")))


def _processor_metrics(url: str) -> dict[str, float]:
    text = httpx.get(url, timeout=10).text
    count = _scraped(text, metrics.RECOMMEND_FEATURE_FRESHNESS, "_count")
    return {
        "events_applied": sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                              if line.startswith(metrics.RECOMMEND_EVENTS_TOTAL + "{") and 'outcome="applied"' in line),
        "consumer_lag": _scraped(text, metrics.RECOMMEND_CONSUMER_LAG),
        "freshness_mean_s": _scraped(text, metrics.RECOMMEND_FEATURE_FRESHNESS, "_sum") / count if count else 0.0,
    }


def recommend_path(say: Callable[[str], None], workdir: Path, env: Mapping[str, str], redis_port: int,
                   stack: contextlib.ExitStack) -> RecommendStep:
    """Run the step, reporting through `say`; its broker and servers stay up until `stack` closes (so the story's
    Prometheus can scrape them)."""
    step = RecommendStep()
    env = {**env, "OMP_NUM_THREADS": "1"}
    _run(["workloads.recommend.dataset", *_flags(DatasetSettings, out=LOG_URI)], workdir / "dataset.log", env,
         "writing the interaction log")
    trained = _run(["workloads.recommend.train", *_flags(TrainSettings, data=LOG_URI, export=EXPORT_URI,
                                                         checkpoints="s3://checkpoints/recommender", epochs=15,
                                                         torch_threads=1)],
                   workdir / "recommend-train.log", env, "training the recommender")
    step.recall = _trained_recall(trained)
    say("trained on " + LOG_URI + ": recall@10 " + ", ".join(f"{k} {v:.3f}" for k, v in step.recall.items()))
    redis_url = f"redis://127.0.0.1:{redis_port}/{FEATURE_REDIS_DB}"
    processor_port, service_port = free_port(), free_port()
    broker = stack.enter_context(tansu_broker())
    broker.create_topics({DEFAULT_TOPIC: PARTITIONS})
    stack.enter_context(_server(["workloads.recommend.processor", *_flags(
        ProcessorSettings, bootstrap_servers=broker.bootstrap_servers, redis_url=redis_url,
        metrics_port=processor_port, stats_interval_ms=int(STATS_INTERVAL_S * 1000),
        # Tansu answers a group join only after max.poll.interval.ms; 30 s keeps that wait short.
        max_poll_interval_ms=30_000, session_timeout_ms=10_000)],
        workdir / "processor.log", env, f"http://127.0.0.1:{processor_port}/metrics"))
    stack.enter_context(_server(["workloads.recommend.service", *_flags(
        ServiceSettings, model_uri=EXPORT_URI, redis_url=redis_url, host="127.0.0.1", port=service_port,
        download_dir=workdir / "recommender", log_level="warning")],
        workdir / "recommend-service.log", env, f"http://127.0.0.1:{service_port}/health"))
    front = stack.enter_context(gateway(f"http://127.0.0.1:{service_port}", workdir / "recommend-gateway.log"))
    step.scrape_targets = [f"127.0.0.1:{processor_port}", f"127.0.0.1:{service_port}"]
    say(f"Tansu {broker.bootstrap_servers} → processor → Redis db {FEATURE_REDIS_DB} → service :{service_port} "
        f"→ gateway {front}")
    _run(["workloads.recommend.loadgen", *_flags(LoadgenSettings, bootstrap_servers=broker.bootstrap_servers,
                                                 events=STREAM_EVENTS, rate=STREAM_RATE)],
         workdir / "loadgen.log", env, "the load generator")
    say(f"streamed {STREAM_EVENTS} events at {STREAM_RATE:.0f}/s")
    with httpx.Client(base_url=front, timeout=30, headers={"Authorization": f"Bearer {API_KEY}"}) as client:
        step.before = _top(client, USER)
        say(f"{USER} top-{TOP_K}: {_in_cluster(step.before, NEW_CLUSTER)} item(s) of cluster {NEW_CLUSTER}")
        produce(make_producer(broker.bootstrap_servers), DEFAULT_TOPIC, _new_cluster_events(USER))
        sent, deadline = time.monotonic(), time.monotonic() + 60
        while time.monotonic() < deadline:
            step.after = _top(client, USER)
            if _in_cluster(step.after, NEW_CLUSTER) >= FOLLOWED:
                step.followed_in_s = time.monotonic() - sent
                break
            time.sleep(0.1)
    shown = f"{step.followed_in_s:.2f}s" if step.followed_in_s is not None else "not within 60s"
    say(f"after {NEW_EVENTS} clicks on cluster {NEW_CLUSTER}: {_in_cluster(step.after, NEW_CLUSTER)} of its items "
        f"in the top-{TOP_K}, followed in {shown}")
    # The top-k can follow before the last of the user's events is applied, and librdkafka reports lag once per
    # stats interval (1 s here): wait for every event to be applied, then for a lag report taken after that.
    expected, deadline = STREAM_EVENTS + NEW_EVENTS, time.monotonic() + 30
    applied_at = None
    while time.monotonic() < deadline:
        step.processor_metrics = _processor_metrics(f"http://127.0.0.1:{processor_port}/metrics")
        if step.processor_metrics["events_applied"] >= expected:
            applied_at = applied_at or time.monotonic()
            if step.processor_metrics["consumer_lag"] == 0 and time.monotonic() - applied_at > STATS_INTERVAL_S:
                break
        time.sleep(0.25)
    for name, value in step.processor_metrics.items():
        say(f"processor {name} = {value:.4g}")
    return step
